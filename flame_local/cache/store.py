"""Thread-safe in-memory object store behind the Flight object cache.

It mirrors Flame v0.6.0's ``object_cache`` (``object_cache/src/cache.rs``) with no persistence
and no eviction:

* keys are ``<app>/<session>/<object_id>``; ``<app>/<session>`` is a prefix (puts generate a
  uuid4 object id) and ``<app>/*`` matches every session of an app (delete only);
* an object is either *opaque* (base bytes plus a list of versioned deltas) or a *native Arrow
  table* (schema + batches, schema metadata ``flame.cache.version`` = the object's version);
* versions: a new key starts at 1; put/update on an existing key is ``current + 1`` where
  ``current = max(base, deltas)`` and drops the deltas; patch appends a delta at ``current + 1``;
  a deleted key starts again at 1.

Payloads stay as the ``pyarrow.Buffer``/``pyarrow.Table`` objects handed in (no copies); objects
are immutable snapshots, so readers never block writers for longer than a dict lookup.
"""

from __future__ import annotations

import enum
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa

__all__ = [
    "CACHE_FORMAT_ARROW_TABLE",
    "CACHE_FORMAT_METADATA_KEY",
    "CACHE_VERSION_METADATA_KEY",
    "WILDCARD_SESSION",
    "BufferLike",
    "CacheError",
    "CacheKeyError",
    "CacheStateError",
    "CacheStats",
    "CacheStore",
    "CachedObject",
    "Delta",
    "GetReply",
    "ObjectInfo",
    "ObjectKey",
    "ObjectNotFoundError",
    "ReplyKind",
    "join_buffers",
    "plan_reply",
]

WILDCARD_SESSION = "*"
CACHE_FORMAT_METADATA_KEY = b"flame.cache.format"
CACHE_VERSION_METADATA_KEY = b"flame.cache.version"
CACHE_FORMAT_ARROW_TABLE = b"arrow-table-v1"

BufferLike = pa.Buffer | bytes | bytearray | memoryview


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


@dataclass(frozen=True, eq=False)
class Delta:
    """One patch appended to an opaque object."""

    version: int
    data: pa.Buffer


@dataclass(frozen=True, eq=False)
class CachedObject:
    """An immutable snapshot of one stored object (exactly one of ``data``/``table`` is set)."""

    key: str
    version: int
    data: pa.Buffer | None = None
    table: pa.Table | None = None
    deltas: tuple[Delta, ...] = ()

    @property
    def is_native(self) -> bool:
        return self.table is not None

    @property
    def current_version(self) -> int:
        return max((d.version for d in self.deltas), default=self.version)

    @property
    def size(self) -> int:
        base = self.table.nbytes if self.table is not None else _nbytes(self.data)
        return base + sum(d.data.size for d in self.deltas)

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.key, self.current_version, self.size, len(self.deltas))

    def patches_after(self, client_version: int) -> tuple[Delta, ...] | None:
        """Deltas newer than ``client_version`` if they alone bring the client up to date.

        That is the case when the client already has the current base (``base <= client``) and
        the missing deltas are exactly ``client+1 .. current``; otherwise None (send it all).
        """
        current = self.current_version
        if client_version == 0 or client_version > current or self.version > client_version:
            return None
        needed = tuple(d for d in self.deltas if d.version > client_version)
        expected = tuple(range(client_version + 1, current + 1))
        return needed if tuple(d.version for d in needed) == expected else None


def _nbytes(buf: pa.Buffer | None) -> int:
    return 0 if buf is None else buf.size


@dataclass(frozen=True)
class ObjectInfo:
    """What a put/patch reports back (Flame's ``ObjectMetadata`` minus the endpoint)."""

    key: str
    version: int
    size: int
    delta_count: int


@dataclass(frozen=True)
class CacheStats:
    objects: int
    bytes: int


class ReplyKind(enum.Enum):
    """How DoGet answers a ``<key>:<client_version>`` ticket."""

    NOT_MODIFIED = "not-modified"  # zero rows: the client's copy is current
    NATIVE = "native"  # the stored Arrow table, own schema
    PATCHES = "patches"  # only the missing deltas
    FULL = "full"  # base row, then every delta


@dataclass(frozen=True)
class GetReply:
    kind: ReplyKind
    obj: CachedObject
    patches: tuple[Delta, ...] = field(default=())


def plan_reply(obj: CachedObject, client_version: int) -> GetReply:
    """Choose the DoGet reply for a client holding ``client_version`` (0 = nothing cached)."""
    if client_version != 0 and client_version == obj.current_version:
        return GetReply(ReplyKind.NOT_MODIFIED, obj)
    if obj.is_native:
        return GetReply(ReplyKind.NATIVE, obj)
    patches = obj.patches_after(client_version)
    if patches is not None:
        return GetReply(ReplyKind.PATCHES, obj, patches)
    return GetReply(ReplyKind.FULL, obj, obj.deltas)


def join_buffers(parts: Sequence[BufferLike]) -> pa.Buffer:
    """One buffer from ``parts``: the part itself when there is one, else a single copy."""
    if len(parts) == 1:
        return _as_buffer(parts[0])
    if not parts:
        return pa.py_buffer(b"")
    return pa.py_buffer(b"".join(parts))


def _as_buffer(data: BufferLike) -> pa.Buffer:
    return data if isinstance(data, pa.Buffer) else pa.py_buffer(data)


def _versioned_table(table: pa.Table, version: int) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[CACHE_VERSION_METADATA_KEY] = str(version).encode()
    return table.replace_schema_metadata(metadata)


class CacheStore:
    """In-memory, thread-safe object store with Flame's key and version semantics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, CachedObject] = {}

    # -- writes ---------------------------------------------------------------------------
    def put(self, key_or_prefix: str, data: BufferLike) -> ObjectInfo:
        """Store opaque bytes under a full key (replace) or a prefix (new uuid4 key)."""
        buf = _as_buffer(data)
        return self._put(key_or_prefix, lambda key, version: CachedObject(key, version, data=buf))

    def put_table(
        self, key_or_prefix: str, table: pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema | None = None
    ) -> ObjectInfo:
        """Store a native Arrow table (a Table, or batches plus ``schema``)."""
        if not isinstance(table, pa.Table):
            table = pa.Table.from_batches(list(table), schema=schema)
        native = table

        def build(key: str, version: int) -> CachedObject:
            return CachedObject(key, version, table=_versioned_table(native, version))

        return self._put(key_or_prefix, build)

    def _put(self, key_or_prefix: str, build: Callable[[str, int], CachedObject]) -> ObjectInfo:
        parsed = ObjectKey.parse(key_or_prefix)
        if parsed.is_all_sessions:
            raise CacheKeyError("Wildcard session '*' is not allowed for put")
        if parsed.object_id is None:
            parsed = parsed.with_generated_id()
        key = str(parsed)
        with self._lock:
            old = self._objects.get(key)
            obj = build(key, (old.current_version if old else 0) + 1)
            self._objects[key] = obj
        return obj.info()

    def patch(self, key: str, data: BufferLike) -> ObjectInfo:
        """Append a delta to an existing object; its version is ``current + 1``."""
        name = str(ObjectKey.parse_key(key))
        buf = _as_buffer(data)
        with self._lock:
            old = self._objects.get(name)
            if old is None:
                raise ObjectNotFoundError(f"object <{name}> not found for patch")
            obj = replace(old, deltas=(*old.deltas, Delta(old.current_version + 1, buf)))
            self._objects[name] = obj
        return obj.info()

    def delete(self, pattern: str) -> int:
        """Delete by full key, ``<app>/<session>`` prefix or ``<app>/*``; returns the count."""
        parsed = ObjectKey.parse(pattern)
        with self._lock:
            doomed = [k for k in self._objects if parsed.matches(k)]
            for k in doomed:
                del self._objects[k]
        return len(doomed)

    def clear(self) -> int:
        """Drop every object; returns how many there were."""
        with self._lock:
            count = len(self._objects)
            self._objects.clear()
        return count

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> CachedObject:
        """The current snapshot of the object under a full key."""
        name = str(ObjectKey.parse_key(key))
        with self._lock:
            obj = self._objects.get(name)
        if obj is None:
            raise ObjectNotFoundError(f"object <{name}> not found")
        return obj

    def reply_for(self, key: str, client_version: int) -> GetReply:
        """The DoGet reply for ``<key>:<client_version>``."""
        return plan_reply(self.get(key), client_version)

    def read_buffer(self, key: str) -> pa.Buffer:
        """The opaque base payload, zero-copy (deltas are not included)."""
        obj = self.get(key)
        if obj.data is None:
            raise CacheStateError("expected opaque object payload")
        return obj.data

    def read_bytes(self, key: str) -> bytes:
        """The opaque base payload as ``bytes`` (e.g. a package uploaded with upload_object)."""
        return self.read_buffer(key).to_pybytes()

    def schema_of(self, key: str) -> pa.Schema | None:
        """The stored schema of a native Arrow object, None for opaque or missing objects."""
        try:
            obj = self.get(key)
        except CacheError:
            return None
        return obj.table.schema if obj.table is not None else None

    def list_objects(self) -> list[ObjectInfo]:
        with self._lock:
            objects = list(self._objects.values())
        return sorted((o.info() for o in objects), key=lambda i: i.key)

    def stats(self) -> CacheStats:
        with self._lock:
            objects = list(self._objects.values())
        return CacheStats(len(objects), sum(o.size for o in objects))

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._objects
