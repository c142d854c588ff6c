"""One call's arguments, made ready to travel: notebook code with its globals, large values by content.

Every argument that is not a small plain value is pickled once with the capture's pickler (so
notebook functions and classes anywhere inside it are captured, and the globals they use join
the call's env), with pickle protocol 5 out-of-band buffers (numpy/pandas/Arrow data is not
copied into the stream). Then, by size:

- small, no notebook code inside: the value itself travels (flamepy pickles it, as before);
- small, notebook code inside: ``(ARG_TAG, dill_bytes)``;
- at least the threshold: the stream and its buffers go to the object store once per content
  digest (no joined copy where the store takes parts) and ``(ARG_REF_TAG, digest, ref)`` travels.

The executor resolves both markers (``remote/namespace.py``).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from typing import Any

from flame_jupyter.remote.wire import ARG_REF_TAG, ARG_TAG, PARTS_MAGIC

from .checksums import slice_crcs
from .env import CaptureDumper, CaptureRun, Recorder
from .errors import CaptureError, error_for

#: Arguments inline in one task add up to at most this (Flame caps a task message at 4 MiB, and
#: the env travels in it too); past it, further arguments go by reference whatever their size.
INLINE_BUDGET = 2 << 20

#: What to do when a task message is over Flame's limit all the same.
TOO_LARGE_ADVICE = (
    "The call's task message is over Flame's 4 MiB limit. Arguments and notebook globals of the "
    "capture threshold (1 MiB) or more travel through the object cache; many smaller globals add up. "
    "Put them in one container (a dict or list: it goes by reference once it is large), or lower "
    "the threshold: flame_jupyter.Runner(capturer=Capturer(store=FlameObjectStore(...), threshold=256 << 10))."
)


def too_large(message: str) -> bool:
    """A Flame error saying a message was over its size limit."""
    return "larger than max" in message or "message length too large" in message


#: Plain values that are never pickled here (strings and bytes only while small).
_SCALARS = (bool, int, float, complex, type(None))


def _flamepy_value(value: Any) -> bool:
    """Futures (flamepy's and ours) and refs: flamepy passes them as references (no download)."""
    from flamepy.runner.runner import ObjectFuture

    return isinstance(value, ObjectFuture) or (type(value).__module__ or "").startswith("flamepy")


def join_parts(parts: list[memoryview]) -> bytes:
    """The parts as one blob (for stores that take bytes): magic, count, lengths, then the parts."""
    head = PARTS_MAGIC + struct.pack(f"<I{len(parts)}Q", len(parts), *(p.nbytes for p in parts))
    out = bytearray(len(head) + sum(p.nbytes for p in parts))
    out[: len(head)] = head
    at = len(head)
    for p in parts:
        out[at : at + p.nbytes] = p
        at += p.nbytes
    return bytes(out)


#: Buffers at least this large are hashed once per content: the same memory (address, size)
#: passed again is only checked with CRC-32s of its slices, on several cores (a quarter of a
#: BLAKE2b pass on two), before its digest is reused, as the globals' ``array_digest`` does.
_CHECKED_BYTES = 1 << 20
_part_digests: OrderedDict[tuple[int, int], tuple[tuple[int, ...], bytes]] = OrderedDict()
_part_lock = threading.Lock()


def _part_digest(part: memoryview) -> bytes:
    if part.nbytes < _CHECKED_BYTES:
        return hashlib.blake2b(part, digest_size=20).digest()
    import pyarrow as pa

    key = (pa.py_buffer(part).address, part.nbytes)  # (the exporter is a fresh PickleBuffer)
    check = slice_crcs(part.cast("B") if part.format != "B" or part.ndim != 1 else part)
    with _part_lock:
        known = _part_digests.get(key)
    if known is not None and known[0] == check:
        return known[1]
    digest = hashlib.blake2b(part, digest_size=20).digest()
    with _part_lock:
        _part_digests[key] = (check, digest)
        while len(_part_digests) > 256:
            _part_digests.popitem(last=False)
    return digest


def parts_digest(parts: list[memoryview]) -> str:
    """Content digest of a pickled argument: its stream and out-of-band buffers, in order."""
    h = hashlib.blake2b(digest_size=20)
    for p in parts:
        h.update(struct.pack("<Q", p.nbytes))
        h.update(_part_digest(p))
    return "arg-" + h.hexdigest()


class ArgumentEncoder:
    """Encodes the arguments of one call; ``names`` and ``modules`` are what their notebook code needs."""

    def __init__(self, run: CaptureRun) -> None:
        self.run = run
        self.names: dict[str, list[str]] = {}
        self.modules: dict[str, None] = {}
        self.inline = 0  # bytes of the arguments that travel inline so far

    def encode(self, label: str, value: Any) -> Any:
        threshold = self.run.threshold
        if isinstance(value, _SCALARS) or _flamepy_value(value):
            return value
        if isinstance(value, (str, bytes, bytearray)) and (
            threshold is None or (len(value) < threshold and self.inline + len(value) <= INLINE_BUDGET)
        ):
            self.inline += len(value)
            return value
        rec = Recorder()
        rec.context = [label]
        buffers: list[Any] = []
        oob = threshold is not None
        data = self._dump(label, value, rec, buffers.append if oob else None)
        views = [memoryview(data), *(b.raw() for b in buffers)]
        size = sum(v.nbytes for v in views)
        notebook = rec.notebook or bool(rec.modules)
        if notebook:
            for name, chain in rec.chains.items():
                self.names.setdefault(name, chain)
            self.modules.update(rec.modules)
        if threshold is None or (size < threshold and self.inline + size <= INLINE_BUDGET):
            self.inline += size
            if not notebook:
                return value
            if buffers:  # small after all: in-band, so the marker is one plain bytes value
                data = self._dump(label, value, Recorder(), None)
            return (ARG_TAG, data)
        digest = parts_digest(views)
        ref = self._upload(digest, views)
        path_of = getattr(self.run.store, "path_of", None)
        path = path_of(ref) if path_of is not None else ""
        return (ARG_REF_TAG, digest, ref, path) if path else (ARG_REF_TAG, digest, ref)

    def _upload(self, digest: str, parts: list[memoryview]) -> Any:
        """The store's ref for this content, putting it there first unless it already is."""
        run = self.run
        with run.lock:
            ref = run.uploaded.get(digest)
        if ref is not None:
            return ref
        store = run.store
        assert store is not None  # a threshold is only set with a store
        put_parts = getattr(store, "put_parts", None)
        ref = put_parts(digest, parts) if put_parts is not None else store.put(digest, join_parts(parts))
        with run.lock:
            run.uploaded[digest] = ref
        return ref

    def _dump(self, label: str, value: Any, rec: Recorder, callback: Any) -> bytes:
        dumper = CaptureDumper(self.run.ns, rec, threshold=None, buffer_callback=callback)
        try:
            return dumper.dump(value)
        except CaptureError:
            raise
        except Exception as exc:  # noqa: BLE001 - every pickling failure is reported the same way
            raise error_for([label], value, dumper.failed, exc) from None
