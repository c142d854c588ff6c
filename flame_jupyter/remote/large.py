"""Large results leave the executor as pickle protocol 5 parts in the object cache.

runpy ``put_object``\\ s what a call returns: for a large value that is cloudpickle into one
``bytes`` (or numpy's tensor bytes), then an Arrow buffer, several full copies. Here a result
that is large (its pickle stream plus out-of-band buffers at least :data:`.wire.LARGE_THRESHOLD`)
is pickled once with protocol 5, its stream and buffers are put under the call's session prefix
as an Arrow table over their own memory (one ``large_binary`` row per part, no copy; cleaned up
with the session like runpy's own result), and the call returns a :class:`LargeResult`: a small
object that runpy caches instead, and that unpickles to the value wherever it is read (the
kernel maps :data:`.wire.LARGE_RESOLVER` to its own in-place decoder, ``results.py``). If the
put is not possible (no object cache, an unpicklable part), the value goes runpy's way.
"""

from __future__ import annotations

import os
import struct
import sys
import uuid
from typing import Any

from .runtime import _rt
from .wire import LARGE_FORMAT, LARGE_THRESHOLD, CallInfo

#: Nodes of a result looked at to guess whether it may be large (beyond: assume it may be).
_PROBE_NODES = 256

_SMALL = (bool, int, float, complex, type(None))

#: Items of a long list or tuple looked at; the rest are taken to be like them.
_SAMPLE = 32


def _estimate(value: Any, budget: list[int]) -> int:
    """A lower-cost guess of a value's data size: arrays, bytes, frames and containers of them."""
    budget[0] -= 1
    if budget[0] < 0:
        return LARGE_THRESHOLD  # too many nodes to look at: let the pickle decide
    if isinstance(value, _SMALL):
        return 8
    if isinstance(value, (bytes, bytearray, str, memoryview)):
        return len(value) if not isinstance(value, memoryview) else value.nbytes
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int) and not isinstance(value, type):
        return nbytes
    if type(value).__module__.startswith("pandas"):
        return LARGE_THRESHOLD  # frames and series hold object columns nbytes does not count
    if isinstance(value, dict):
        return sum(_estimate(k, budget) + _estimate(v, budget) for k, v in value.items())
    if isinstance(value, (list, tuple)) and len(value) > _SAMPLE:  # a map chunk's many outcomes
        return sum(_estimate(v, budget) for v in value[:_SAMPLE]) * len(value) // _SAMPLE
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(_estimate(v, budget) for v in value)
    return sys.getsizeof(value) if not hasattr(value, "__dict__") else _estimate(vars(value), budget)


def parts_table(parts: list[Any]) -> Any:
    """An Arrow table over ``parts``' own memory: column ``part``, one ``large_binary`` row each."""
    import pyarrow as pa

    batches = []
    for part in parts:
        view = memoryview(part).cast("B") if not isinstance(part, pa.Buffer) else part
        size = view.size if isinstance(view, pa.Buffer) else view.nbytes
        offsets = pa.py_buffer(struct.pack("<qq", 0, size))
        column = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(view)])
        batches.append(pa.RecordBatch.from_arrays([column], names=["part"]))
    return pa.Table.from_batches(batches, schema=pa.schema([("part", pa.large_binary())]))


def table_parts(table: Any) -> list[Any]:
    """The parts of :func:`parts_table`'s table, as Arrow buffers over its memory (no copy)."""
    parts = []
    for chunk in table.column("part").chunks:
        _, offsets, data = chunk.buffers()  # (a scalar's as_buffer() would copy its bytes)
        ends = struct.unpack_from(f"<{len(chunk) + 1}q", offsets, 8 * chunk.offset)
        parts += [data.slice(ends[i], ends[i + 1] - ends[i]) for i in range(len(chunk))]
    return parts


class LargeResult:
    """What a call returns in place of a large value: pickles as a call of :func:`resolve_large`
    (``path``: the cache's file of the object on this host, "" when it went over Flight)."""

    __slots__ = ("endpoint", "key", "version", "path")

    def __init__(self, endpoint: str, key: str, version: int, path: str = "") -> None:
        self.endpoint, self.key, self.version, self.path = endpoint, key, version, path

    def __reduce__(self) -> tuple[Any, ...]:
        return (resolve_large, (LARGE_FORMAT, self.endpoint, self.key, self.version, self.path))


def read_file_parts(path: str) -> list[Any] | None:
    """The parts of a large value from the cache's own file, memory-mapped copy-on-write (so the
    value is writable as a local one, and nothing is copied until it is written), or None if the
    file is gone or not on this host: then read it over Flight."""
    import mmap

    import pyarrow as pa

    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        whole = pa.py_buffer(mapped)
        parts = table_parts(pa.ipc.open_file(whole).read_all())
    except (OSError, ValueError, pa.ArrowInvalid):
        return None
    base, view = whole.address, memoryview(mapped)
    inside = all(base <= p.address and p.address + p.size <= base + whole.size for p in parts)
    return [view[p.address - base : p.address - base + p.size] for p in parts] if inside else parts


def resolve_large(fmt: int, endpoint: str, key: str, version: int, path: str = "") -> Any:
    """The value behind a :class:`LargeResult`, read on an executor (a nested call's result)."""
    if fmt != LARGE_FORMAT:
        raise RuntimeError(f"flame_jupyter: large result of format {fmt!r}, this side reads {LARGE_FORMAT}")
    import cloudpickle
    from flamepy.core import ObjectRef, get_object

    parts = read_file_parts(path)
    if parts is None:
        parts = table_parts(get_object(ObjectRef(endpoint=endpoint, key=key, version=0)))
    stream, *buffers = parts
    return cloudpickle.loads(stream, buffers=buffers)


def encode_result(call: CallInfo | None, value: Any) -> Any:
    """``value``, or a :class:`LargeResult` for it once its parts are in the object cache."""
    stream_key = call.get("stream") if isinstance(call, dict) else None
    if not stream_key or isinstance(value, _SMALL):
        return value
    try:
        if _estimate(value, [_PROBE_NODES]) < LARGE_THRESHOLD:
            return value
        import cloudpickle
        from flamepy.core import put_object

        buffers: list[Any] = []
        stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        parts = [stream, *(b.raw() for b in buffers)]
        if sum(memoryview(p).nbytes for p in parts) < LARGE_THRESHOLD:
            return value
        prefix, table = stream_key.rsplit("/", 1)[0], parts_table(parts)
        storage = call.get("storage") if isinstance(call, dict) else None
        local = put_file(storage, prefix, table) if storage else None
        if local is not None:
            return LargeResult(*local)
        ref = put_object(prefix, table)
    except Exception:  # noqa: BLE001 - no fast path here: runpy caches the value as before
        return value
    return LargeResult(ref.endpoint, ref.key, ref.version)


def put_file(storage: str, prefix: str, table: Any) -> tuple[str, str, int, str] | None:
    """Put ``table`` as a file of the cache's storage (Flame's disk layout, same host only): the
    cache holds the object once ``GetFlightInfo`` names it. Returns ``(endpoint, key, version,
    path)``, or None if this is not that host."""
    import pyarrow as pa
    import pyarrow.flight as flight
    from flamepy.core.types import FlameContext

    if not os.path.isdir(storage):
        return None
    app, session = prefix.split("/", 1)
    folder = os.path.join(storage, app, session)
    object_id = str(uuid.uuid4())
    path = os.path.join(folder, object_id + ".arrow")
    meta = {"flame.cache.format": "arrow-table-v1", "flame.cache.version": "1"}
    table = table.replace_schema_metadata({**meta, "flame.cache.logical_type": "pyarrow.table"})
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with pa.OSFile(path + ".part", "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)
        os.rename(path + ".part", path)
    except OSError:  # e.g. a full tmpfs: nothing left behind, the value goes over Flight
        for leftover in (path + ".part", path):
            try:
                os.unlink(leftover)
            except OSError:
                pass
        return None
    key = f"{prefix}/{object_id}"
    try:
        info = _flight(FlameContext().cache.endpoint).get_flight_info(flight.FlightDescriptor.for_path(key))
    except Exception:  # noqa: BLE001 - the cache did not answer: not our file's reader
        info = None
    if info is None or "part" not in info.schema.names:  # another host's cache: not held
        os.unlink(path)
        return None
    location = info.endpoints[0].locations[0].uri
    return (location.decode() if isinstance(location, bytes) else str(location), key, 1, path)


def _flight(endpoint: str) -> Any:
    """One Flight client per cache endpoint in this process."""
    import pyarrow.flight as flight

    clients = _rt().__dict__.setdefault("flight_clients", {})
    client = clients.get(endpoint)
    if client is None:
        client = clients[endpoint] = flight.FlightClient(endpoint)
    return client
