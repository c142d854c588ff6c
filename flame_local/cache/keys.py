"""Object keys and the errors of the object cache, as Flame v0.6.0's ``ObjectKey::from_path``
(``object_cache/src/cache.rs``): a component may not be empty or hold ``..`` or ``\\``; nothing
else is checked (Flame accepts NUL, control and bidi characters and any length, so this does too).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace

WILDCARD_SESSION = "*"
_U64_MAX = 2**64 - 1
_DIGITS = re.compile(r"\+?[0-9]+")


class CacheError(Exception):
    """Base class of object-store errors; ``str()`` is the message sent to clients."""


class CacheKeyError(CacheError, ValueError):
    """A malformed key, prefix or pattern (Flame: ``InvalidConfig`` -> INVALID_ARGUMENT)."""


class CacheStateError(CacheError, ValueError):
    """A request that does not fit the stored object (Flame: ``InvalidState``)."""


class ObjectNotFoundError(CacheError, LookupError):
    """No object under the key (Flame: ``NotFound``)."""


@dataclass(frozen=True)
class ObjectKey:
    """A parsed ``<app>/<session>[/<object_id>]`` key; ``session == "*"`` means all sessions."""

    app: str
    session: str
    object_id: str | None = None

    @classmethod
    def parse(cls, path: str) -> ObjectKey:
        """Parse a prefix, full key or ``<app>/*`` pattern (Flame's ``ObjectKey::from_path``)."""
        parts = path.split("/")
        for index, part in enumerate(parts):
            _check_component(part)
            if part == WILDCARD_SESSION and index != 1:
                raise CacheKeyError("Wildcard '*' only allowed for session_id")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3:
            if parts[1] == WILDCARD_SESSION:
                raise CacheKeyError("Wildcard session '*' cannot have object_id")
            return cls(parts[0], parts[1], parts[2])
        raise CacheKeyError(f"Invalid path '{path}': expected '<app>/<ssn>' or '<app>/<ssn>/<uuid>'")

    @classmethod
    def parse_key(cls, key: str) -> ObjectKey:
        """Parse a full ``<app>/<session>/<object_id>`` key."""
        if key.count("/") != 2:
            raise CacheKeyError(f"Invalid key '{key}': expected '<app>/<ssn>/<uuid>'")
        return cls.parse(key)

    @property
    def is_all_sessions(self) -> bool:
        return self.session == WILDCARD_SESSION

    @property
    def prefix(self) -> str:
        return f"{self.app}/{self.session}"

    @property
    def key(self) -> str | None:
        """The full key, or None for a prefix or pattern."""
        return None if self.object_id is None else f"{self.prefix}/{self.object_id}"

    def with_generated_id(self) -> ObjectKey:
        return replace(self, object_id=str(uuid.uuid4()))

    def matches(self, key: str) -> bool:
        """True if the full key ``key`` is selected by this key, prefix or pattern."""
        if self.is_all_sessions:
            return key.startswith(f"{self.app}/")
        if self.object_id is not None:
            return key == self.key
        return key.startswith(f"{self.prefix}/")

    def __str__(self) -> str:
        return self.key or self.prefix


def _check_component(part: str) -> None:
    if not part or ".." in part or "\\" in part:
        raise CacheKeyError(f"Invalid key component: '{part}'")


class CacheFullError(CacheError):
    """Over the cache's byte budget with no room to spill, or one object over the per-object limit
    (sent as RESOURCE_EXHAUSTED)."""


def human_size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def parse_ticket(ticket: bytes) -> tuple[str, int]:
    """Split a DoGet ticket ``<key>[:<client_version>]`` (Flame's parsing and messages)."""
    try:
        text = ticket.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CacheKeyError(f"Invalid ticket: {exc}") from None
    key, sep, raw = text.partition(":")
    if not sep:
        return key, 0
    if not raw:
        raise CacheKeyError("Invalid version: cannot parse integer from empty string")
    if not _DIGITS.fullmatch(raw):
        raise CacheKeyError("Invalid version: invalid digit found in string")
    version = int(raw)
    if version > _U64_MAX:
        raise CacheKeyError("Invalid version: number too large to fit in target type")
    return key, version
