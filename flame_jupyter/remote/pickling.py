"""The pickling engine: dill bytes bound to a notebook namespace, content digests.

The only module of the package that touches dill and cloudpickle internals (the dill pickler's
``__main__`` handling, cloudpickle's class reducer and class tracker).
"""

from __future__ import annotations

import hashlib
import io
import sys
import types
import uuid
from collections import OrderedDict
from typing import Any

import cloudpickle

from .channel import RemoteAPI
from .runtime import _blob, _np, _rt
from .versions import _dill
from .wire import REF_TAG

PICKLE_PROTOCOL = 5
_NS_MARK = "__flame_jupyter_ns__"


class _NsAlias:
    """Object whose ``__dict__`` is a given dict (what dill expects for ``__main__``)."""

    __slots__ = ("cur",)

    def __init__(self, d: dict[str, Any]) -> None:
        self.cur = d

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return self.cur


def array_digest(arr: Any) -> str:
    """Content digest of a numpy array, hashing its buffer directly (no pickling).

    SHA-256 (hardware-accelerated on current CPUs). Hashing the same array object again is
    skipped when two fast checksums of its bytes (CRC-32 and Adler-32, a third of the cost)
    are unchanged since its digest was computed.
    """
    import zlib

    np = _np()
    head = (f"{arr.dtype.str}|{arr.shape!r}|").encode()
    if arr.flags.c_contiguous:
        flat = arr
    elif arr.flags.f_contiguous:
        flat = arr.T
        head += b"F"
    else:
        flat = np.ascontiguousarray(arr)
    view = memoryview(flat.reshape(-1).view(np.uint8))
    rt = _rt()
    cache = getattr(rt, "array_digests", None)
    if cache is None:
        cache = rt.array_digests = OrderedDict()
    key = (id(arr), arr.ctypes.data, head)
    check = (zlib.crc32(view), zlib.adler32(view))
    with rt.lock:
        hit = cache.get(key)
        if hit is not None and hit[0] == check:
            return hit[1]
    h = hashlib.sha256(head)
    h.update(view)
    digest = "np-" + h.hexdigest()[:40]
    with rt.lock:
        cache[key] = (check, digest)
        while len(cache) > 256:
            cache.popitem(last=False)
    return digest


def bytes_digest(data: bytes | bytearray | memoryview) -> str:
    """Content digest of raw bytes."""
    return "b2-" + hashlib.blake2b(data, digest_size=20).hexdigest()


def cheap_digest(obj: Any, threshold: int) -> str | None:
    """Digest of a large array/bytes value (``None`` if small or not hashable cheaply)."""
    t = type(obj)
    if t is bytes or t is bytearray:
        return bytes_digest(obj) if len(obj) >= threshold else None
    np = _np()
    if np is not None and t is np.ndarray and not obj.dtype.hasobject and obj.nbytes >= threshold:
        return array_digest(obj)
    return None


class Dumper:
    """A dill pickler bound to a notebook namespace ``ns``.

    Functions whose globals are ``ns`` are saved *without* their globals: on load they share one
    namespace dict, filled from the env. Classes defined in the notebook are saved by value with
    cloudpickle's class reducer (works for enums, NamedTuples, dataclasses). Subclasses add hooks
    (global discovery, blocked types, large values).

    >>> data = Dumper({"__name__": "__main__"}).dump([1, 2])
    """

    def __init__(
        self,
        ns: dict[str, Any],
        *,
        threshold: int | None = None,
        known: Any = None,
        buffer_callback: Any = None,
    ) -> None:
        dill = _dill()
        self.ns = ns
        self.threshold = threshold
        self.known = known if known is not None else {}
        self.failed: tuple[Any, BaseException] | None = None
        self._buf = io.BytesIO()
        self._placeholder = {"__name__": "__main__", _NS_MARK: uuid.uuid4().hex}
        self._alias = _NsAlias(ns)
        main = sys.modules.get("__main__")
        self._main_alt = getattr(main, "__dict__", None) if main is not None else None
        extra = {} if buffer_callback is None else {"buffer_callback": buffer_callback}
        p = dill.Pickler(self._buf, protocol=PICKLE_PROTOCOL, byref=False, recurse=False, **extra)
        p._main = _NsAlias(self._placeholder)
        p._main_modified = True
        p._original_main = self._alias
        p.save = self._save
        p.persistent_id = self._persistent_id
        self._p = p
        self._stock_save = type(p).save
        self._out_of_band = buffer_callback is not None

    def dump(self, obj: Any) -> bytes:
        self._p.dump(obj)
        return self._buf.getvalue()

    # hooks ---------------------------------------------------------------
    def on_function(self, fn: types.FunctionType) -> None:
        """Called for every notebook function saved by value."""

    def on_object(self, obj: Any) -> None:
        """Called for (almost) every object before it is saved."""

    def large_id(self, obj: Any) -> str | None:
        """Digest under which ``obj`` travels by reference, or ``None`` to inline it."""
        if self.threshold is None or not self.known:
            return None
        digest = cheap_digest(obj, self.threshold)
        return digest if digest is not None and digest in self.known else None

    # machinery -----------------------------------------------------------
    def _persistent_id(self, obj: Any) -> Any:
        digest = self.large_id(obj)
        return None if digest is None else (REF_TAG, digest)

    def _save(self, obj: Any, save_persistent_id: bool = True) -> None:
        p = self._p
        try:
            t = type(obj)
            if t is types.FunctionType:
                g = obj.__globals__
                if g is self.ns or (g is self._main_alt and obj.__module__ == "__main__"):
                    self._alias.cur = g
                    p._recurse = False
                    self.on_function(obj)
                else:
                    # Globals of a module travel by reference; any other globals dict (exec'd
                    # code, doctests) travels reduced to the names the function uses.
                    mod = sys.modules.get(obj.__module__ or "")
                    p._recurse = getattr(mod, "__dict__", None) is not g
            elif obj is self.ns:
                obj = self._placeholder
            elif isinstance(obj, type):
                if id(obj) not in p.memo and self._save_class(obj):
                    return
            elif t is types.ModuleType and obj.__name__ != "__main__":
                if id(obj) not in p.memo:
                    self.on_object(obj)
                    p.save_reduce(RemoteAPI("import_module"), (obj.__name__,), obj=obj)
                    return
            elif self._out_of_band and self._save_array_out_of_band(obj):
                return
            elif t.__name__ == "_FIELD_BASE" and t.__module__ == "dataclasses":
                p.save_reduce(_dataclass_sentinel_ref(), (obj.name,), obj=obj)
                return
            self.on_object(obj)
            self._stock_save(p, obj, save_persistent_id)
        except BaseException as exc:
            if self.failed is None:
                self.failed = (obj, exc)
            raise

    def _save_array_out_of_band(self, obj: Any) -> bool:
        """A plain numpy array as numpy's protocol-5 reduction, so its data is an out-of-band
        buffer (dill's own numpy reducer always copies the data into the stream)."""
        np = _np()
        if np is None or type(obj) is not np.ndarray or obj.dtype.hasobject or id(obj) in self._p.memo:
            return False
        self.on_object(obj)
        self._p.save_reduce(*obj.__reduce_ex__(PICKLE_PROTOCOL), obj=obj)
        return True

    def _save_class(self, cls: type) -> bool:
        cp = cloudpickle.cloudpickle
        if cp._should_pickle_by_reference(cls) or cls in cp._BUILTIN_TYPE_NAMES:
            return False
        self.on_object(cls)
        fn, args, state, _, _, setter = cp._dynamic_class_reduce(cls)
        tracker_index = 5 if fn is cp._make_skeleton_enum else 4
        args = list(args)
        args[tracker_index] = _class_tracker_id(cls)
        self._p.save_reduce(fn, tuple(args), state, None, None, setter, obj=cls)
        return True


def _dataclass_sentinel_ref() -> Any:
    return cloudpickle.cloudpickle._get_dataclass_field_type_sentinel


def _class_tracker_id(cls: type) -> str:
    """Tracker id for cloudpickle's class registry, distinct from cloudpickle's own ids.

    Executors reuse one class object per id (so instances of a notebook class loaded from
    different blobs share the class), while results sent back with the executor's cloudpickle
    do not overwrite the notebook's own class definition.
    """
    cp = cloudpickle.cloudpickle
    existing = cp._DYNAMIC_CLASS_TRACKER_BY_CLASS.get(cls)
    if existing is not None and existing.startswith("fj-"):
        return existing
    rt = _rt()
    with rt.lock:
        ids = getattr(rt, "class_ids", None)
        if ids is None:
            import weakref

            ids = rt.class_ids = weakref.WeakKeyDictionary()
        tid = ids.get(cls)
        if tid is None:
            tid = ids[cls] = "fj-" + uuid.uuid4().hex
    return tid


def class_for_tracker_id(tid: str) -> type | None:
    """The class that :func:`_class_tracker_id` named ``tid`` in this process, if any."""
    if not tid.startswith("fj-"):
        return None
    ids = getattr(_rt(), "class_ids", None)
    if ids is None:
        return None
    for cls, known in list(ids.items()):
        if known == tid:
            return cls
    return None


class Loader:
    """Inverse of :class:`Dumper`: loads dill bytes into the namespace ``ns``."""

    def __init__(self, ns: dict[str, Any], refs: dict[str, Any] | None = None) -> None:
        self.ns = ns
        self.refs = refs or {}
        self._memo: dict[str, Any] = {}

    def loads(self, data: bytes, buffers: Any = None) -> Any:
        """The object of ``data``; ``buffers``: its out-of-band buffers (pickle protocol 5)."""
        dill = _dill()
        u = dill.Unpickler(io.BytesIO(data), ignore=True, **({} if buffers is None else {"buffers": buffers}))
        u._main = _NsAlias(self.ns)
        u.persistent_load = self._persistent_load
        return u.load()

    def _persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == REF_TAG):
            raise RuntimeError(f"flame_jupyter: unknown persistent id {pid!r}")
        digest = pid[1]
        if digest not in self._memo:
            self._memo[digest] = self.loads(_blob(digest, self.refs))
        return self._memo[digest]
