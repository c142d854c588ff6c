"""Fetching a result from the object cache: fewer copies, and notebook classes stay themselves.

flamepy's ``get_object`` reads the reply, turns the payload into Python ``bytes`` and slices off
the 4-byte format prefix (two full copies of a large array) before decoding. Here the payload
stays the Arrow buffer it arrived in: numpy tensors are decoded in place and pickles are read
from a memoryview.

Results are pickled by the executor's cloudpickle; instances of notebook classes arrive with
their class by value. :class:`ResultUnpickler` maps such classes back to the notebook's own
class objects (by the tracker id the capture engine gave them), so ``isinstance`` and ``==``
against notebook classes work, without touching the notebook class's definition.
"""

from __future__ import annotations

import io
import pickle
import threading
from typing import Any

from flame_jupyter.remote.bootstrap import PACKAGE_PREFIX
from flame_jupyter.remote.large import read_file_parts, table_parts
from flame_jupyter.remote.wire import LARGE_FORMAT, LARGE_RESOLVER

_TYPE_CLOUDPICKLE = b"FLM\x00"
_TYPE_NUMPY = b"FLM\x01"


def _client(endpoint: str) -> Any:
    from flame_jupyter._flamepy import flight_client

    return flight_client(endpoint)


class _Kept:
    """A notebook class handed back for a skeleton: its state must not be re-applied."""


def _notebook_class(tracker_id: Any) -> type | None:
    from flame_jupyter.remote import class_for_tracker_id

    return class_for_tracker_id(tracker_id) if isinstance(tracker_id, str) else None


class ResultUnpickler(pickle.Unpickler):
    """An unpickler that resolves executor copies of notebook classes to the notebook's classes,
    and large results (``remote/large.py``) to their value, fetched and decoded in place."""

    def __init__(self, file: Any, buffers: Any = None) -> None:
        super().__init__(file, buffers=buffers)
        self._kept: set[int] = set()

    def find_class(self, module: str, name: str) -> Any:
        if name == LARGE_RESOLVER and module.startswith(PACKAGE_PREFIX) and module.endswith(".large"):
            return resolve_large
        if module == "cloudpickle.cloudpickle":
            if name == "_make_skeleton_class":
                return self._skeleton_class
            if name == "_make_skeleton_enum":
                return self._skeleton_enum
            if name == "_class_setstate":
                return self._class_setstate
        return super().find_class(module, name)

    def _skeleton_class(
        self, type_constructor: Any, name: str, bases: Any, type_kwargs: Any, tracker_id: Any, extra: Any
    ) -> Any:
        cls = _notebook_class(tracker_id)
        if cls is not None:
            self._kept.add(id(cls))
            return cls
        import cloudpickle

        return cloudpickle.cloudpickle._make_skeleton_class(
            type_constructor, name, bases, type_kwargs, tracker_id, extra
        )

    def _skeleton_enum(
        self, bases: Any, name: str, qualname: str, members: Any, module: str, tracker_id: Any, extra: Any
    ) -> Any:
        cls = _notebook_class(tracker_id)
        if cls is not None:
            self._kept.add(id(cls))
            return cls
        import cloudpickle

        return cloudpickle.cloudpickle._make_skeleton_enum(
            bases, name, qualname, members, module, tracker_id, extra
        )

    def _class_setstate(self, obj: Any, state: Any) -> Any:
        if id(obj) in self._kept:
            return obj
        import cloudpickle

        return cloudpickle.cloudpickle._class_setstate(obj, state)


def loads(data: Any, buffers: Any = None) -> Any:
    """Unpickle result bytes (any bytes-like object) with :class:`ResultUnpickler`."""
    return ResultUnpickler(io.BytesIO(data) if not isinstance(data, io.IOBase) else data, buffers).load()


def resolve_large(fmt: int, endpoint: str, key: str, version: int, path: str = "") -> Any:
    """A large result's value: its parts memory-mapped from the cache's file when it is on this
    host, else in one Flight stream; protocol 5 buffers are used in place (numpy, pandas and Arrow
    data are read-only views of them)."""
    import pyarrow.flight as flight

    if fmt != LARGE_FORMAT:
        raise RuntimeError(
            f"flame_jupyter: the executor sent a large result of format {fmt!r}, this kernel reads "
            f"{LARGE_FORMAT}: use the same flame_jupyter version on both ends"
        )
    parts = read_file_parts(path)
    if parts is None:
        table = _client(endpoint).do_get(flight.Ticket(f"{key}:0".encode())).read_all()
        parts = table_parts(table)
    stream, *buffers = parts
    value = loads(memoryview(stream), buffers)
    objects = getattr(_resolving, "objects", None)
    if objects is not None:
        objects.append((endpoint, key))
    return value


_resolving = threading.local()  # .objects: the large results' (endpoint, key) a fetch resolved


def fetch(ref: Any, owner: Any = None) -> Any:
    """The object behind an ``ObjectRef`` (results are single-row, patch-free objects). With an
    ``owner`` future, the large results it held are deleted once that future is collected
    unshared (:mod:`.result_release`)."""
    if owner is None:
        return _fetch(ref)
    _resolving.objects = objects = []
    try:
        value = _fetch(ref)
    finally:
        _resolving.objects = None
    from flame_jupyter.result_release import release_when_collected

    release_when_collected(owner, objects)
    return value


def _fetch(ref: Any) -> Any:
    import pyarrow as pa
    import pyarrow.flight as flight

    table = _client(ref.endpoint).do_get(flight.Ticket(f"{ref.key}:0".encode())).read_all()
    meta = table.schema.metadata or {}
    if b"flame.cache.format" in meta or "data" not in table.column_names or table.num_rows != 1:
        from flamepy.core import get_object  # native Arrow objects, or anything unusual: flamepy's path

        return get_object(type(ref)(endpoint=ref.endpoint, key=ref.key, version=0))
    buf = table.column("data").chunk(0)[0].as_buffer()
    prefix = buf[:4].to_pybytes()
    if prefix == _TYPE_NUMPY:
        return pa.ipc.read_tensor(pa.BufferReader(buf.slice(4))).to_numpy()
    if prefix == _TYPE_CLOUDPICKLE:
        return loads(memoryview(buf)[4:])
    if prefix.startswith(b"FLM"):  # other flamepy formats (Arrow tables, arrays): flamepy decodes
        from flame_jupyter._flamepy import decode_cache_data

        return decode_cache_data(buf.to_pybytes())
    return loads(memoryview(buf))
