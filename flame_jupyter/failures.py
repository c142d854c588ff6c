"""How a remote exception travels back: inside Flame's own failure message, and out again.

Flame carries one string per failed task (``TaskResult.message`` -> the task's code-3 event ->
flamepy's ``FlameError``). The remote side (:mod:`flame_jupyter.remote.channel`) makes that string
``"<Type>: <message>"`` for any reader, followed by a marked record with the exception's type,
module, message and formatted traceback (:mod:`flame_jupyter.remote.wire`). This module runs in
the kernel: :func:`decode_failure` turns the
``FlameError`` back into an exception of the remote type where the type is known here (so
``except ValueError`` works), carrying the remote traceback.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

from flame_jupyter.errors import CancelledError, RemoteError
from flame_jupyter.remote import wire

_dynamic: dict[tuple[str, str], type] = {}


def _remote_class(module: str, name: str) -> type[RemoteError]:
    """``RemoteError`` combined with the remote exception type, when that type exists here."""
    key = (module, name)
    if key in _dynamic:
        return _dynamic[key]
    base: type | None = None
    if module == "builtins":
        base = getattr(builtins, name, None)
    elif module in sys.modules:
        obj: Any = sys.modules[module]
        for part in name.split("."):
            obj = getattr(obj, part, None)
        base = obj if isinstance(obj, type) else None
    if base is None or not issubclass(base, Exception) or issubclass(base, RemoteError):
        cls: type = RemoteError
    else:
        try:
            cls = type(
                name.rsplit(".", 1)[-1],
                (RemoteError, base),
                {"__module__": module, "__init__": RemoteError.__init__, "__str__": RemoteError.__str__},
            )
        except TypeError:  # an incompatible layout (some C exceptions): plain RemoteError
            cls = RemoteError
    _dynamic[key] = cls
    return cls


def decode_failure(exc: BaseException) -> BaseException:
    """Turn what a failed task's future raised into the exception to show the user."""
    text = getattr(exc, "message", None) or str(exc)
    record = wire.decode_failure(text)
    if record is None:
        if isinstance(exc, Exception) and type(exc).__name__ == "FlameError":
            return RemoteError(_explain_lost_connection(text), remote_type="", remote_traceback="")
        return exc
    module, name = record.get("module", ""), record.get("type", "Exception")
    if name == wire.CANCELLED_NAME and module == wire.CANCELLED_MODULE:
        return CancelledError(record.get("message") or "cancelled")
    cls = _remote_class(module, name)
    err = cls.__new__(cls)
    RemoteError.__init__(
        err,
        f"{record.get('message', '')}",
        remote_type=f"{module}.{name}" if module not in ("builtins", "") else name,
        remote_traceback=record.get("traceback", ""),
    )
    return err


_LOST = ("Socket closed", "failed to connect", "Connection refused", "shutting down", "Stream removed")


def _explain_lost_connection(text: str) -> str:
    """flamepy reports a watch that lost its server as a transport detail; say what it means."""
    if text.startswith("failed to watch task") and any(s in text for s in _LOST):
        return (
            f"lost the connection to Flame while waiting for this task ({text}): the runtime stopped or "
            "cannot be reached, so the task's outcome is unknown"
        )
    return text
