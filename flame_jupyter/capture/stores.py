"""Where large values go: Flame's object cache, or memory (tests, local runs).

Both satisfy :class:`.env.ObjectStore`.
"""

from __future__ import annotations

import uuid
from typing import Any

from flame_jupyter.remote import register_local_object


class FlameObjectStore:
    """Large values in Flame's object cache (``flamepy.core.put_object``/``get_object``).

    ``key_prefix`` is ``"<app>/<session>"``; pick one that outlives the services using it.
    """

    def __init__(self, key_prefix: str = "flame-jupyter/objects") -> None:
        self.key_prefix = key_prefix
        self._paths: dict[str, str] = {}  # key -> the cache's file of it (same-host puts)

    def put(self, key_hint: str, data: bytes) -> Any:
        from flamepy.core import put_object

        return put_object(self.key_prefix, data)

    def put_parts(self, key_hint: str, parts: list[memoryview]) -> Any:
        """Put a pickled argument's parts without joining them: an Arrow table over the parts'
        own memory, one ``large_binary`` row each (see :data:`~flame_jupyter.remote.wire.ARG_REF_TAG`)."""
        from flamepy.core import ObjectRef, put_object

        from flame_jupyter.remote.large import parts_table, put_file

        table = parts_table(parts)
        storage = _cache_storage()
        local = put_file(storage, self.key_prefix, table) if storage else None
        if local is None:
            return put_object(self.key_prefix, table)
        endpoint, key, version, path = local
        self._paths[key] = path
        return ObjectRef(endpoint=endpoint, key=key, version=version)

    def path_of(self, ref: Any) -> str:
        """The cache's file of an object this store put on this host ("" if it went over Flight)."""
        return self._paths.get(getattr(ref, "key", ""), "")

    def get(self, ref: Any) -> bytes:
        from flamepy.core import get_object

        return get_object(ref)


def _cache_storage() -> str:
    """The embedded runtime's cache storage dir if this process started it (else "")."""
    from flame_jupyter.calls import _cache_storage as storage

    return storage()


class MemoryObjectStore:
    """In-process store for tests and local runs.

    Refs are flamepy ``ObjectRef`` objects; values are fetchable in this process only.
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts: list[str] = []

    def put(self, key_hint: str, data: bytes) -> Any:
        from flamepy.core import ObjectRef

        key = f"flame-jupyter/memory/{uuid.uuid4().hex}"
        self.data[key] = bytes(data)
        register_local_object(key, self.data[key])
        self.puts.append(key_hint)
        return ObjectRef(endpoint="memory://local", key=key, version=1)

    def get(self, ref: Any) -> bytes:
        return self.data[ref.key]
