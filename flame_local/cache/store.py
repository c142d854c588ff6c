"""Thread-safe in-memory object store behind the Flight object cache.

Long because it is one lock's state: objects, LRU, memory budget, spilling and adopted files.

It mirrors Flame v0.6.0's ``object_cache`` (``object_cache/src/cache.rs``, no persistence
across restarts) and its LRU eviction under a byte budget (``eviction.rs``), spilling to disk as
Flame does with a disk storage:

* keys are ``<app>/<session>/<object_id>``; ``<app>/<session>`` is a prefix (puts generate a
  uuid4 object id) and ``<app>/*`` matches every session of an app (delete only);
* an object is either *opaque* (base bytes plus a list of versioned deltas) or a *native Arrow
  table* (schema + batches, schema metadata ``flame.cache.version`` = the object's version);
* versions: a new key starts at 1; put/update on an existing key is ``current + 1`` where
  ``current = max(base, deltas)`` and drops the deltas; patch appends a delta at ``current + 1``;
  a deleted key starts again at 1.

Payloads are the pyarrow objects handed in (no copies); budget rules: docs/runtime.md.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from flame_local.cache.keys import (
    WILDCARD_SESSION,
    CacheError,
    CacheFullError,
    CacheKeyError,
    CacheStateError,
    ObjectKey,
    ObjectNotFoundError,
    human_size,
)
from flame_local.cache.spill import SpillDir, SpilledObject

__all__ = [
    "CACHE_FORMAT_ARROW_TABLE",
    "CACHE_FORMAT_METADATA_KEY",
    "CACHE_VERSION_METADATA_KEY",
    "WILDCARD_SESSION",
    "BufferLike",
    "CacheError",
    "CacheFullError",
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

CACHE_FORMAT_METADATA_KEY = b"flame.cache.format"
CACHE_VERSION_METADATA_KEY = b"flame.cache.version"
CACHE_FORMAT_ARROW_TABLE = b"arrow-table-v1"

BufferLike = pa.Buffer | bytes | bytearray | memoryview


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
    memory_bytes: int = 0
    spilled_bytes: int = 0


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
    """Thread-safe object store with Flame's key and version semantics.

    With a ``budget`` (bytes) and a ``spill_dir``, objects beyond the budget are moved to files
    there, least recently used first (Flame's LRU eviction with a disk storage); a write that
    would need more than ``disk_budget`` bytes of files is refused (:class:`CacheFullError`), as
    is an object over ``max_object`` bytes. Without a budget nothing is ever moved.
    """

    def __init__(
        self,
        budget: int | None = None,
        spill_dir: Path | None = None,
        disk_budget: int = 16 << 30,
        max_object: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, CachedObject | SpilledObject] = {}
        self._lru: OrderedDict[str, None] = OrderedDict()  # keys in memory, least recent first
        self._memory = 0
        self.budget = budget
        self.max_object = max_object
        self._spill = SpillDir(spill_dir, disk_budget) if spill_dir is not None else None

    # -- writes ---------------------------------------------------------------------------
    def put(self, key_or_prefix: str, data: BufferLike) -> ObjectInfo:
        """Store opaque bytes under a full key (replace) or a prefix (new uuid4 key)."""
        buf = _as_buffer(data)
        return self._put(key_or_prefix, buf.size, lambda key, version: CachedObject(key, version, data=buf))

    def put_table(
        self, key_or_prefix: str, table: pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema | None = None
    ) -> ObjectInfo:
        """Store a native Arrow table (a Table, or batches plus ``schema``)."""
        if not isinstance(table, pa.Table):
            table = pa.Table.from_batches(list(table), schema=schema)
        native = table

        def build(key: str, version: int) -> CachedObject:
            return CachedObject(key, version, table=_versioned_table(native, version))

        return self._put(key_or_prefix, native.nbytes, build)

    def _put(self, key_or_prefix: str, size: int, build: Callable[[str, int], CachedObject]) -> ObjectInfo:
        parsed = ObjectKey.parse(key_or_prefix)
        if parsed.is_all_sessions:
            raise CacheKeyError("Wildcard session '*' is not allowed for put")
        self.check_object_size(size)
        if parsed.object_id is None:
            parsed = parsed.with_generated_id()
        key = str(parsed)
        with self._lock:
            old = self._objects.get(key)
            self._make_room(size)
            obj = build(key, (old.current_version if old else 0) + 1)
            self._replace(key, obj)
        return obj.info()

    def adopt(self, obj: SpilledObject) -> None:
        """Hold a file written by a same-host writer (``storage.DiskStorage``) as a spilled object."""
        with self._lock:
            if self._spill is None or obj.key in self._objects:
                return
            self._objects[obj.key] = obj
            self._spill.used += obj.size

    def patch(self, key: str, data: BufferLike) -> ObjectInfo:
        """Append a delta to an existing object; its version is ``current + 1``."""
        name = str(ObjectKey.parse_key(key))
        buf = _as_buffer(data)
        with self._lock:
            old = self._objects.get(name)
            if old is None:
                raise ObjectNotFoundError(f"object <{name}> not found for patch")
            self.check_object_size(old.size + buf.size)
            self._make_room(buf.size + (old.size if isinstance(old, SpilledObject) else 0))
            base = self._load(old) if isinstance(old, SpilledObject) else old
            obj = replace(base, deltas=(*base.deltas, Delta(base.current_version + 1, buf)))
            self._replace(name, obj)
        return obj.info()

    def delete(self, pattern: str) -> int:
        """Delete by full key, ``<app>/<session>`` prefix or ``<app>/*``; returns the count."""
        parsed = ObjectKey.parse(pattern)
        with self._lock:
            doomed = [k for k in self._objects if parsed.matches(k)]
            for k in doomed:
                self._drop(k)
        return len(doomed)

    def clear(self) -> int:
        """Drop every object (and every spill file); returns how many there were."""
        with self._lock:
            count = len(self._objects)
            self._objects.clear()
            self._lru.clear()
            self._memory = 0
            if self._spill is not None:
                self._spill.close()
        return count

    # -- budget ---------------------------------------------------------------------------
    def check_object_size(self, size: int) -> None:
        """Refuse an object over the per-object limit (CacheFullError)."""
        if self.max_object is not None and size > self.max_object:
            raise CacheFullError(
                f"object of {human_size(size)} exceeds the object cache's per-object limit of "
                f"{human_size(self.max_object)} (flame-local --cache-max-object)"
            )

    def _make_room(self, incoming: int) -> None:
        """Refuse (before anything changes) a write whose spilling would not fit the disk budget."""
        if self.budget is None:
            return
        excess = self._memory + incoming - self.budget
        if excess > 0 and (self._spill is None or not self._spill.room(excess)):
            spilled = self._spill.used if self._spill is not None else 0
            raise CacheFullError(
                f"object cache is full: {human_size(self._memory)} in memory (budget {human_size(self.budget)}) and "
                f"{human_size(spilled)} on disk; delete objects (close sessions, Runner.close()) or raise "
                "flame-local --cache-budget / --cache-disk-budget"
            )

    def _replace(self, key: str, obj: CachedObject) -> None:
        self._drop(key)
        self._objects[key] = obj
        self._lru[key] = None
        self._memory += obj.size
        self._evict()

    def _drop(self, key: str) -> None:
        old = self._objects.pop(key, None)
        if isinstance(old, SpilledObject):
            assert self._spill is not None
            self._spill.remove(old)
        elif old is not None:
            self._memory -= old.size
            del self._lru[key]

    def _evict(self) -> None:
        """Spill least recently used objects until memory is within the budget."""
        if self.budget is None or self._spill is None:
            return
        while self._memory > self.budget and self._lru:
            key = next(iter(self._lru))
            obj = self._objects[key]
            assert isinstance(obj, CachedObject)
            deltas = [(d.version, d.data) for d in obj.deltas]
            self._objects[key] = self._spill.write(key, obj.version, obj.size, obj.data, obj.table, deltas)
            del self._lru[key]
            self._memory -= obj.size

    def _load(self, obj: SpilledObject) -> CachedObject:
        """A spilled object, memory-mapped from its files (it stays spilled)."""
        read = SpillDir.read_buffer
        deltas = tuple(Delta(v, read(p)) for v, p in obj.deltas)
        if obj.native:
            table = _versioned_table(SpillDir.read_table(obj.base), obj.version)  # (adopted files)
            return CachedObject(obj.key, obj.version, table=table, deltas=deltas)
        return CachedObject(obj.key, obj.version, data=read(obj.base), deltas=deltas)

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> CachedObject:
        """The current snapshot of the object under a full key."""
        name = str(ObjectKey.parse_key(key))
        with self._lock:
            obj = self._objects.get(name)
            if obj is None:
                raise ObjectNotFoundError(f"object <{name}> not found")
            if isinstance(obj, SpilledObject):
                return self._load(obj)
            self._lru.move_to_end(name)
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
        return sorted((_info(o) for o in objects), key=lambda i: i.key)

    def stats(self) -> CacheStats:
        with self._lock:
            objects = list(self._objects.values())
            memory = self._memory
        total = sum(o.size for o in objects)
        return CacheStats(len(objects), total, memory, total - memory)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._objects


def _info(obj: CachedObject | SpilledObject) -> ObjectInfo:
    if isinstance(obj, SpilledObject):
        return ObjectInfo(obj.key, obj.current_version, obj.size, len(obj.deltas))
    return obj.info()
