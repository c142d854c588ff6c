"""Flame's disk storage layout: objects a same-host writer left as files, read through on a miss.

Flame v0.6.0 with ``cache.storage`` reads an object it does not hold in memory from
``<storage>/<app>/<session>/<id>.arrow`` (``object_cache/src/cache.rs`` ``get``/``schema``,
``storage/disk.rs`` L49-66), so a writer on the same host (flamepy's ``put_object`` with
``FLAME_CACHE_STORAGE``; flame_jupyter's large results) can put an object by writing that file
and asking ``GetFlightInfo`` for its key. Here such a file becomes a spilled object of the store
(memory-mapped when read, never copied into the heap); deleting the object deletes the file.
Only native Arrow objects are read this way; files are taken as they are (the writer renames a
finished file into place).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa

from flame_local.cache.keys import CacheKeyError, ObjectKey
from flame_local.cache.spill import SpilledObject
from flame_local.cache.store import CACHE_FORMAT_METADATA_KEY, CACHE_VERSION_METADATA_KEY, CacheStore

__all__ = ["DiskStorage"]


class DiskStorage:
    """``<root>/<app>/<session>/<id>.arrow`` files, adopted by a :class:`CacheStore` when asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path | None:
        """Where the object under a full key would be (None for a prefix or a bad key)."""
        try:
            parsed = ObjectKey.parse(key)
        except CacheKeyError:
            return None
        if parsed.object_id is None or parsed.is_all_sessions:
            return None
        return self.root / parsed.app / parsed.session / f"{parsed.object_id}.arrow"

    def read_through(self, store: CacheStore, key: str) -> None:
        """Adopt the file for ``key`` into ``store`` if the store does not hold ``key`` yet."""
        if key in store:
            return
        path = self.path_of(key)
        if path is None or not path.is_file():
            return
        try:
            with pa.memory_map(str(path)) as mm:
                schema = pa.ipc.open_file(mm).schema
        except (OSError, pa.ArrowInvalid):
            return  # not an Arrow file: not an object
        meta = schema.metadata or {}
        if CACHE_FORMAT_METADATA_KEY not in meta:
            return  # only native Arrow objects (an opaque one's file layout differs from spill files)
        version = max(1, int(meta.get(CACHE_VERSION_METADATA_KEY, b"1") or 1))
        store.adopt(SpilledObject(key, version, path.stat().st_size, True, path))

    def delete(self, pattern: str) -> None:
        """Remove the files of ``<app>/<session>`` or ``<app>/*`` (a full key: its own file)."""
        try:
            parsed = ObjectKey.parse(pattern)
        except CacheKeyError:
            return
        if parsed.object_id is not None:
            path = self.path_of(pattern)
            if path is not None:
                path.unlink(missing_ok=True)
            return
        where = self.root / parsed.app
        shutil.rmtree(where if parsed.is_all_sessions else where / parsed.session, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
