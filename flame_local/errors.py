"""Runtime errors, classified the way Flame maps its errors onto gRPC status codes.

Flame (``common/src/lib.rs``) maps NotFound -> NOT_FOUND, AlreadyExist -> ALREADY_EXISTS,
InvalidConfig/InvalidState -> INVALID_ARGUMENT and everything else -> INTERNAL, with the bare
message as the status details.  The frontend turns a :class:`FlameRuntimeError` into exactly that.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"


class FlameRuntimeError(Exception):
    """An error with a Flame error class; ``str()`` is the message sent to clients."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(message: str) -> FlameRuntimeError:
    return FlameRuntimeError(Code.NOT_FOUND, message)


def already_exists(message: str) -> FlameRuntimeError:
    return FlameRuntimeError(Code.ALREADY_EXISTS, message)


def invalid(message: str) -> FlameRuntimeError:
    return FlameRuntimeError(Code.INVALID_ARGUMENT, message)


def internal(message: str) -> FlameRuntimeError:
    return FlameRuntimeError(Code.INTERNAL, message)


def unavailable(message: str) -> FlameRuntimeError:
    return FlameRuntimeError(Code.UNAVAILABLE, message)
