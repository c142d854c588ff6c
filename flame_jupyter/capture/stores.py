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

    def put_parts(self, key_hint: str, parts: list[memoryview]) -> Any:
        """Put a pickled argument's parts without joining them: an Arrow table over the parts'
        own memory, one ``large_binary`` row each (see :data:`~flame_jupyter.remote.wire.ARG_REF_TAG`)."""
        import struct

        import pyarrow as pa
        from flamepy.core import put_object

        batches = []
        for part in parts:
            offsets = pa.py_buffer(struct.pack("<qq", 0, part.nbytes))
            column = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(part)])
            batches.append(pa.RecordBatch.from_arrays([column], names=["part"]))
        return put_object(self.key_prefix, pa.Table.from_batches(batches))

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
