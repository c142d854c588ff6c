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

    def put(self, key_hint: str, data: bytes) -> Any:
        from flamepy.core import put_object

        return put_object(self.key_prefix, data)

    def get(self, ref: Any) -> bytes:
        from flamepy.core import get_object

        return get_object(ref)


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
