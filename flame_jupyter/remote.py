"""Executor-side half of the capture engine.

This module runs inside the *stock* ``python -m flamepy.runner.runpy`` service, where neither
flame_jupyter nor IPython is installed. It therefore imports only the standard library,
``cloudpickle`` and (lazily) ``dill`` and ``flamepy``.

It never travels as bytecode: every object defined here pickles (via ``__reduce__``) to a small
stdlib-only bootstrap that ``exec``s this module's compressed *source* on the executor once per
process. Source is portable across Python versions, so a version mismatch between the kernel and
the executor reaches :func:`check_versions` and becomes a clear ``RuntimeError`` instead of an
obscure unpickling failure.

What travels (see ``docs/capture.md``):

- a *payload state* (plain dict): header (versions), ``body`` (dill bytes of the user's function,
  class, instance or cell), ``refs`` (content digest -> flamepy ``ObjectRef`` for large values),
  the creation-time *env* and metadata;
- per call, an optional ``__flame_env__`` keyword argument: the current values of the notebook
  globals the code uses (see :data:`ENV_KWARG`).

The wrappers flamepy sees:

- :class:`RemoteFunction` -- a callable instance (flamepy: stateless function service);
- :func:`make_remote_class` -- a class with one stub per public method (flamepy: class service);
- :class:`RemoteInstance` -- an object whose state is re-serialized after each call
  (flamepy: stateful instance service).
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import functools
import hashlib
import importlib
import inspect
import io
import linecache
import operator
import os
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cloudpickle

#: Keyword argument that carries the current notebook globals on each call.
#: Value: ``None`` (use the values frozen at capture) or an *env* dict::
#:
#:     {"format": 1,
#:      "entries": [(name, kind, digest, data), ...],   # kind: "code" | "value" | "module"
#:      "refs": {digest: ObjectRef},                     # large values, fetched with get_object
#:      "modules": [(top_name, digest, {relpath: bytes})],  # local modules shipped as source
#:      "lines": {filename: source_text}}                # notebook cells, for tracebacks
#:
#: ``data`` is dill bytes (code/value), a module name (module), or ``None`` when the whole
#: entry lives in the object cache under ``refs[digest]``.
ENV_KWARG = "__flame_env__"

#: Keyword argument that carries the call's channel (see :func:`guarded`)::
#:
#:     {"id": call id, "stream": "<app>/<session>/<object id>", "cancel": "<app>/<session>/<object id>"}
#:
#: Output, progress and displays are appended to the ``stream`` object of the object cache
#: (created on the first record, then patched); the client cancels by creating ``cancel``.
CALL_KWARG = "__flame_call__"

#: Tag of an argument encoded by the capture engine (``(ARG_TAG, dill_bytes)``).
ARG_TAG = "\x00flame_jupyter.arg"

#: Persistent-id tag for values stored in the object cache.
REF_TAG = "flame_jupyter.ref"

PAYLOAD_FORMAT = 1
PICKLE_PROTOCOL = 5
_NS_MARK = "__flame_jupyter_ns__"
_RUNTIME_NAME = "_flame_jupyter_runtime_v1"
_SERVICE_MODULE = "__flame_jupyter_service__"


# --------------------------------------------------------------------------- versions


def _dill() -> Any:
    try:
        import dill
    except ImportError as exc:  # pragma: no cover - depends on the executor image
        raise RuntimeError(
            "flame_jupyter payloads need 'dill' on the executor; install it there "
            "(pip install dill) with the same version as in the notebook kernel"
        ) from exc
    return dill


def versions() -> dict[str, str]:
    """Versions that must match between kernel and executor."""
    try:
        dill_version = _dill().__version__
    except RuntimeError:
        dill_version = "missing"
    return {
        "python": ".".join(str(p) for p in sys.version_info[:3]),
        "dill": dill_version,
        "cloudpickle": cloudpickle.__version__,
    }


def make_header() -> dict[str, Any]:
    """Header stored in every payload: format and serializer versions."""
    return {"format": PAYLOAD_FORMAT, **versions()}


def _minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def _describe(v: dict[str, str]) -> str:
    return "Python {} / dill {} / cloudpickle {}".format(
        _minor(v.get("python", "?")),
        v.get("dill", "?"),
        v.get("cloudpickle", "?"),
    )


def check_versions(header: dict[str, Any]) -> None:
    """Raise ``RuntimeError`` if this process cannot load a payload made under ``header``.

    Python, dill and cloudpickle must agree on major.minor (bytecode and pickle formats).
    """
    mine = versions()
    fmt = header.get("format")
    if fmt != PAYLOAD_FORMAT:
        raise RuntimeError(
            f"flame_jupyter payload format {fmt!r} is not supported by this executor (expects {PAYLOAD_FORMAT!r}); "
            "use the same flame_jupyter version everywhere"
        )
    if all(_minor(header.get(k, "?")) == _minor(mine[k]) for k in ("python", "dill", "cloudpickle")):
        return
    want = {k: header.get(k, "?") for k in ("python", "dill", "cloudpickle")}
    raise RuntimeError(
        "flame_jupyter payload was made with {} but this executor has {}; "
        "code captured in a notebook only runs where Python and the serializers match: "
        "install dill=={} and cloudpickle=={} on the executors and run them with Python {} "
        "(or switch the notebook kernel to Python {})".format(
            _describe(want),
            _describe(mine),
            want["dill"],
            want["cloudpickle"],
            _minor(want["python"]),
            _minor(mine["python"]),
        )
    )


# --------------------------------------------------------------------------- bootstrap

_BOOT_STUB = b"""
def _bootstrap(kind, state):
    import sys, types, zlib
    mod = sys.modules.get(_NAME)
    if mod is None:
        mod = types.ModuleType(_NAME)
        mod.__dict__["_FLAME_SOURCE"] = _BLOB
        code = compile(zlib.decompress(_BLOB), "<flame_jupyter.remote>", "exec")
        exec(code, mod.__dict__)
        sys.modules[_NAME] = mod
    return mod._build(kind, state)
"""

_boot_cache: list[Any] = []
_boot_lock = threading.Lock()


def _source_blob() -> bytes:
    """zlib-compressed source of this module (read at import, so it matches the loaded code)."""
    return globals()["_FLAME_SOURCE"]


if "_FLAME_SOURCE" not in globals():  # imported normally (not bootstrapped from source)
    with open(__file__, "rb") as _fh:
        _FLAME_SOURCE = zlib.compress(_fh.read(), 9)
    del _fh


class _Reduced:
    """Placeholder that pickles as ``fn(*args)`` (``fn`` a stdlib callable)."""

    __slots__ = ("_fn", "_args")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn = fn
        self._args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self._fn, self._args)


class _BootFn:
    """Callable that, pickled, becomes the executor-side ``_bootstrap`` function."""

    __slots__ = ("_ns",)

    def __init__(self, ns: _Reduced) -> None:
        self._ns = ns

    def __call__(self, kind: str, state: Any) -> Any:
        return _build(kind, state)

    def __reduce__(self) -> tuple[Any, ...]:
        return (operator.getitem, (self._ns, "_bootstrap"))


def _boot_fn() -> _BootFn:
    """The (cached) bootstrap callable; identical objects let pickle memoize the source once."""
    with _boot_lock:
        if not _boot_cache:
            blob = _source_blob()
            name = "_flame_jupyter_remote_" + hashlib.sha256(blob).hexdigest()[:16]
            env = {"__name__": "_flame_jupyter_boot", "_NAME": name, "_BLOB": blob}
            run = _Reduced(exec, (_BOOT_STUB, env))
            ns = _Reduced(operator.getitem, ((run, env), 1))
            _boot_cache.append(_BootFn(ns))
        return _boot_cache[0]


def _build(kind: str, state: Any) -> Any:
    """Rebuild a wrapper object of this module (called by the bootstrap on the executor)."""
    _register_own_source()
    if isinstance(state, dict):
        # Local modules first: flamepy unpickles call arguments (which may use them) before
        # any of our code runs. Writing source files needs no version check.
        _install_modules((state.get("env") or {}).get("modules"))
    if kind == "function":
        return RemoteFunction(state)
    if kind == "instance":
        return RemoteInstance(state, live=_live_instance(state))
    if kind == "init":
        return _InitDescriptor(state)
    if kind == "stub":
        return _MethodStub(state)
    if kind == "api":
        return RemoteAPI(state)
    raise ValueError(f"unknown flame_jupyter object kind {kind!r}")


def _register_own_source() -> None:
    name = "<flame_jupyter.remote>"
    if name not in linecache.cache and "_FLAME_SOURCE" in globals() and "__file__" not in globals():
        text = zlib.decompress(globals()["_FLAME_SOURCE"]).decode("utf-8")
        lines = text.splitlines(keepends=True)
        linecache.cache[name] = (len(text), None, lines, name)


# --------------------------------------------------------------------------- runtime state


def _rt() -> types.ModuleType:
    """Per-process state shared by every copy of this module (kept in ``sys.modules``)."""
    rt = sys.modules.get(_RUNTIME_NAME)
    if rt is None:
        rt = types.ModuleType(_RUNTIME_NAME)
        rt.lock = threading.RLock()
        rt.namespaces = OrderedDict()  # payload id -> namespace record
        rt.blobs = OrderedDict()  # digest -> bytes
        rt.blob_bytes = [0]
        rt.modules = {}  # top-level module name -> (digest, root dir)
        rt.module_dir = [None]
        rt = sys.modules.setdefault(_RUNTIME_NAME, rt)
    return rt


_MAX_NAMESPACES = 64


def _blob_limit() -> int:
    try:
        return int(os.environ.get("FLAME_JUPYTER_BLOB_CACHE_BYTES", str(1 << 30)))
    except ValueError:
        return 1 << 30


def register_local_object(key: str, data: bytes) -> None:
    """Make ``data`` fetchable in this process under ``key`` (in-process stores, tests)."""
    rt = _rt()
    with rt.lock:
        if not hasattr(rt, "local_objects"):
            rt.local_objects = {}
        rt.local_objects[key] = data


def _fetch(ref: Any) -> bytes:
    """Fetch one cached value with flamepy's ``get_object`` (the real object cache)."""
    local = getattr(_rt(), "local_objects", None)
    if local and getattr(ref, "key", None) in local:
        return local[ref.key]
    import flamepy.core

    data = flamepy.core.get_object(ref)
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise RuntimeError(f"flame_jupyter: object {ref!r} holds {type(data).__name__}, expected bytes")
    return bytes(data)


def _blob(digest: str, refs: dict[str, Any]) -> bytes:
    rt = _rt()
    with rt.lock:
        data = rt.blobs.get(digest)
        if data is not None:
            rt.blobs.move_to_end(digest)
            return data
    ref = refs.get(digest)
    if ref is None:
        raise RuntimeError(f"flame_jupyter: no object reference for value {digest}")
    data = _fetch(ref)
    with rt.lock:
        rt.blobs[digest] = data
        rt.blob_bytes[0] += len(data)
        limit = _blob_limit()
        while rt.blob_bytes[0] > limit and len(rt.blobs) > 1:
            _, old = rt.blobs.popitem(last=False)
            rt.blob_bytes[0] -= len(old)
    return data


def _decoded_large(digest: str, refs: dict[str, Any], loader: Any) -> Any:
    """A large global, decoded once per process and content digest.

    Decoding a 200 MB array for every call would cost more than the call; numpy arrays are
    handed out read-only, so no call can change what the next call sees (copy to modify).
    """
    rt = _rt()
    cache = getattr(rt, "decoded", None)
    if cache is None:
        cache = rt.decoded = OrderedDict()
    with rt.lock:
        if digest in cache:
            cache.move_to_end(digest)
            return cache[digest]
    value = loader.loads(_blob(digest, refs))
    np = _np()
    if np is not None and isinstance(value, np.ndarray):
        value.setflags(write=False)
        with rt.lock:
            cache[digest] = value
            while len(cache) > 16:
                cache.popitem(last=False)
    return value


def _register_lines(lines: dict[str, str]) -> None:
    """Make notebook cell sources visible to ``linecache`` (and so to tracebacks)."""
    for filename, text in lines.items():
        entry = linecache.cache.get(filename)
        if entry is not None and len(entry) == 4 and entry[1] is not None:
            continue  # a real file on this machine wins
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)


def _module_base_dir() -> str:
    rt = _rt()
    with rt.lock:
        if rt.module_dir[0] is None:
            rt.module_dir[0] = tempfile.mkdtemp(prefix="flame_jupyter_modules_")
            atexit.register(shutil.rmtree, rt.module_dir[0], True)
        return rt.module_dir[0]


def _install_modules(mods: Any) -> None:
    """Install local (not pip-installed) notebook modules shipped as source files."""
    rt = _rt()
    for top, digest, files in mods or ():
        with rt.lock:
            current = rt.modules.get(top)
            if current is not None and current[0] == digest:
                continue
            root = os.path.join(_module_base_dir(), f"{top}-{digest[:20]}")
            for rel, data in files.items():
                path = os.path.join(root, *rel.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(data)
            if current is not None:
                if current[1] in sys.path:
                    sys.path.remove(current[1])
                for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                    del sys.modules[name]
            sys.path.insert(0, root)
            importlib.invalidate_caches()
            rt.modules[top] = (digest, root)


# --------------------------------------------------------------------------- pickling


class _NsAlias:
    """Object whose ``__dict__`` is a given dict (what dill expects for ``__main__``)."""

    __slots__ = ("cur",)

    def __init__(self, d: dict[str, Any]) -> None:
        self.cur = d

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return self.cur


def _np() -> Any:
    return sys.modules.get("numpy")


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

    def __init__(self, ns: dict[str, Any], *, threshold: int | None = None, known: Any = None) -> None:
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
        p = dill.Pickler(self._buf, protocol=PICKLE_PROTOCOL, byref=False, recurse=False)
        p._main = _NsAlias(self._placeholder)
        p._main_modified = True
        p._original_main = self._alias
        p.save = self._save
        p.persistent_id = self._persistent_id
        self._p = p
        self._stock_save = type(p).save

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
            elif t.__name__ == "_FIELD_BASE" and t.__module__ == "dataclasses":
                p.save_reduce(_dataclass_sentinel_ref(), (obj.name,), obj=obj)
                return
            self.on_object(obj)
            self._stock_save(p, obj, save_persistent_id)
        except BaseException as exc:
            if self.failed is None:
                self.failed = (obj, exc)
            raise

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

    def loads(self, data: bytes) -> Any:
        dill = _dill()
        u = dill.Unpickler(io.BytesIO(data), ignore=True)
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


# --------------------------------------------------------------------------- namespaces


def _new_namespace() -> dict[str, Any]:
    return {"__name__": "__main__", "__builtins__": builtins}


def _namespace(state: dict[str, Any]) -> dict[str, Any]:
    """Namespace record of a payload (created once per process, then reused)."""
    rt = _rt()
    with rt.lock:
        rec = rt.namespaces.get(state["id"])
        if rec is not None:
            rt.namespaces.move_to_end(state["id"])
            return rec
    rec = {"G": _new_namespace(), "applied": {}, "refs": dict(state.get("refs") or {}), "env": None}
    for name in ("display", "progress"):  # what notebook code may call remotely besides print
        rec["G"].setdefault(name, globals()[name])
    apply_env(rec, state.get("env"))
    with rt.lock:
        rt.namespaces[state["id"]] = rec
        while len(rt.namespaces) > _MAX_NAMESPACES:
            rt.namespaces.popitem(last=False)
    return rec


def apply_env(rec: dict[str, Any], env: dict[str, Any] | None) -> None:
    """Bind the env's globals into the namespace record ``rec``.

    Unchanged code entries and modules are kept (same objects); values are decoded afresh so
    every call sees the notebook's value, not one mutated by an earlier call.
    """
    if env is None:
        return
    _install_modules(env.get("modules"))
    _register_lines(env.get("lines") or {})
    G = rec["G"]
    applied = rec["applied"]
    refs = rec["refs"]
    refs.update(env.get("refs") or {})
    loader = Loader(G, refs)
    seen = set()
    for name, kind, digest, data in env.get("entries", ()):
        seen.add(name)
        if kind != "value" and applied.get(name) == digest and name in G:
            continue
        try:
            if kind == "module":
                G[name] = import_module(data)
            elif data is None:
                G[name] = _decoded_large(digest, refs, loader)
            else:
                G[name] = loader.loads(data)
        except Exception as exc:
            raise _load_error(f"notebook global {name!r}", exc) from exc
        applied[name] = digest
    for name in [n for n in applied if n not in seen]:
        del applied[name]
        G.pop(name, None)
    rec["env"] = env


def _load_error(what: str, exc: BaseException) -> RuntimeError:
    hint = " (install it on the executors)" if isinstance(exc, ImportError) else ""
    return RuntimeError(
        f"flame_jupyter: cannot load {what} on this executor: {type(exc).__name__}: {exc}{hint}"
    )


def _load_body(state: dict[str, Any], rec: dict[str, Any]) -> Any:
    try:
        return Loader(rec["G"], rec["refs"]).loads(state["body"])
    except Exception as exc:
        raise _load_error(f"the captured {state['kind']} {state.get('name')!r}", exc) from exc


def _prepare(state: dict[str, Any], env: Any) -> dict[str, Any]:
    check_versions(state["header"])
    rec = _namespace(state)
    if env is not None:
        if state.get("snapshot"):
            _install_modules(env.get("modules"))  # modules needed by encoded arguments
        else:
            apply_env(rec, env)
    return rec


def _decode_args(rec: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    loader = None

    def dec(v: Any) -> Any:
        nonlocal loader
        if type(v) is tuple and len(v) == 2 and v[0] == ARG_TAG:
            if loader is None:
                loader = Loader(rec["G"], rec["refs"])
            return loader.loads(v[1])
        return v

    return tuple(dec(a) for a in args), {k: dec(v) for k, v in kwargs.items()}


# --------------------------------------------------------------------------- execution


def run_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
    """Run user code: the single choke point of every remote call.

    Seam for output streaming, progress reporting and exception formatting. Exceptions from
    user code propagate unchanged (type and traceback, with notebook cell lines).
    """
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = _run_coroutine(result)
    return result


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=runner, name="flame-jupyter-async")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _eval_maybe_async(code: types.CodeType, G: dict[str, Any]) -> Any:
    result = eval(code, G)
    if code.co_flags & inspect.CO_COROUTINE:
        result = _run_coroutine(result)
    return result


def _run_cell(spec: tuple[Any, ...], G: dict[str, Any]) -> dict[str, Any]:
    exec_code, eval_code, outputs = spec[0], spec[1], spec[2]
    if exec_code is not None:
        _eval_maybe_async(exec_code, G)
    value = _eval_maybe_async(eval_code, G) if eval_code is not None else None
    missing = [n for n in outputs if n not in G]
    if missing:
        raise NameError("%%flame: the cell did not define {}".format(", ".join(repr(n) for n in missing)))
    return {"value": value, "outputs": {n: G[n] for n in outputs}}


# --------------------------------------------------------------------------- wrappers


class RemoteFunction:
    """A captured function, lambda, partial, callable object or ``%%flame`` cell.

    flamepy sees a callable non-class object and creates a stateless function service; on the
    executor each call pops :data:`ENV_KWARG`, refreshes the notebook globals and runs the code.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self._flame_state = state
        self._flame_target: Any = None
        self.__name__ = state.get("name") or "remote"
        if state.get("session_context") is not None:
            self._session_context = state["session_context"]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        env = kwargs.pop(ENV_KWARG, None)
        call = kwargs.pop(CALL_KWARG, None)
        return guarded(call, self._flame_call, args, kwargs, env)

    def _flame_call(self, args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
        state = self._flame_state
        rec = _prepare(state, env)
        if self._flame_target is None:
            self._flame_target = _load_body(state, rec)
        target = self._flame_target
        if state["kind"] == "cell":
            return run_call(_run_cell, (target, rec["G"]), {}, env)
        args, kwargs = _decode_args(rec, args, kwargs)
        return run_call(target, args, kwargs, env)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("function", self._flame_state))

    def __repr__(self) -> str:
        return "<flame_jupyter remote {} {}>".format(self._flame_state["kind"], self.__name__)


_UNLOADED = object()


class RemoteInstance:
    """A captured object: a stateful flamepy service.

    ``dir()`` lists the wrapped object's public methods; attribute access delegates to it once
    loaded. Pickling (runpy does it after every call) re-serializes the wrapped object's current
    state, so mutations survive between calls.
    """

    def __init__(self, state: dict[str, Any], live: Any = _UNLOADED) -> None:
        self.__dict__["_flame_state"] = state
        self.__dict__["_flame_obj"] = live
        if state.get("session_context") is not None:
            self.__dict__["_session_context"] = state["session_context"]

    def _flame_load(self, env: Any = None) -> tuple[dict[str, Any], Any]:
        state = self.__dict__["_flame_state"]
        rec = _prepare(state, env)
        obj = self.__dict__["_flame_obj"]
        if obj is _UNLOADED:
            obj = _load_body(state, rec)
            self.__dict__["_flame_obj"] = obj
        return rec, obj

    def _flame_invoke(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        env = kwargs.pop(ENV_KWARG, None)
        call = kwargs.pop(CALL_KWARG, None)

        def invoke(args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
            rec, obj = self._flame_load(env)
            try:
                args, kwargs = _decode_args(rec, args, kwargs)
                return run_call(getattr(obj, name), args, kwargs, env)
            except BaseException:
                _forget_live_instance(obj)
                raise

        return guarded(call, invoke, args, kwargs, env)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        d = self.__dict__
        if d.get("_flame_obj", _UNLOADED) is _UNLOADED:
            if name in d["_flame_state"].get("methods", ()):
                return functools.partial(self._flame_invoke, name)
            raise AttributeError(
                f"{self!r} has no method {name!r} (attributes other than public methods are read on the executor)"
            )
        value = getattr(d["_flame_obj"], name)
        return functools.partial(self._flame_invoke, name) if callable(value) else value

    def __dir__(self) -> list[str]:
        return list(self.__dict__["_flame_state"].get("methods", ()))

    def __reduce__(self) -> tuple[Any, ...]:
        state = self.__dict__["_flame_state"]
        obj = self.__dict__.get("_flame_obj", _UNLOADED)
        if obj is not _UNLOADED:
            rec = _namespace(state)
            try:
                body = Dumper(rec["G"], threshold=state.get("threshold"), known=rec["refs"]).dump(obj)
            except Exception as exc:
                raise RuntimeError(
                    f"flame_jupyter: cannot save the state of {state.get('name')} after the call "
                    f"({type(exc).__name__}: {exc}); a stateful service must keep picklable state: "
                    "open files, sockets and connections should be opened inside each call"
                ) from exc
            state = dict(state, body=body, env=rec["env"] or state.get("env"), refs=dict(rec["refs"]))
            _keep_live_instance(state, obj)
        return (_boot_fn(), ("instance", state))

    def __repr__(self) -> str:
        return "<flame_jupyter remote instance of {}>".format(self.__dict__["_flame_state"].get("name"))


_LIVE_INSTANCES = 8


def _instance_key(state: dict[str, Any]) -> tuple[Any, ...] | None:
    body = state.get("body")
    if not isinstance(body, (bytes, bytearray)):
        return None
    return (state.get("id"), len(body), hashlib.blake2b(body, digest_size=16).digest())


def _keep_live_instance(state: dict[str, Any], obj: Any) -> None:
    """Remember the object whose state was just saved (flamepy's runpy persists a stateful
    service after every call and reloads it before the next)."""
    key = _instance_key(state)
    if key is None:
        return
    rt = _rt()
    with rt.lock:
        live = rt.__dict__.setdefault("live_instances", OrderedDict())
        _drop_live(live, obj)  # its previous state is not what it is now
        live[key] = obj
        live.move_to_end(key)
        while len(live) > _LIVE_INSTANCES:
            live.popitem(last=False)


def _forget_live_instance(obj: Any) -> None:
    """A call on ``obj`` failed: runpy does not save it, so the next call must start from the
    saved state, not from this (possibly half-changed) object."""
    rt = _rt()
    with rt.lock:
        _drop_live(rt.__dict__.get("live_instances") or {}, obj)


def _drop_live(live: dict[Any, Any], obj: Any) -> None:
    for key in [k for k, v in live.items() if v is obj]:
        del live[key]


def _live_instance(state: dict[str, Any]) -> Any:
    """The object this process saved as exactly ``state`` (same payload, byte-identical body),
    so the reload before the next call costs a hash instead of unpickling the object again.
    Any other state (another instance saved it, or it changed) is loaded from its bytes."""
    key = _instance_key(state)
    if key is None:
        return _UNLOADED
    rt = _rt()
    with rt.lock:
        live = rt.__dict__.get("live_instances")
        return live.get(key, _UNLOADED) if live else _UNLOADED


class _InitDescriptor:
    """``__init__`` of a remote class: loads the user's class and instantiates it."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __get__(self, inst: Any, owner: Any = None) -> Any:
        if inst is None:
            return self
        return functools.partial(_init_instance, self._state, inst)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("__init__ of a flame_jupyter remote class needs an instance")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("init", self._state))


def _init_instance(state: dict[str, Any], inst: Any, *args: Any, **kwargs: Any) -> None:
    env = kwargs.pop(ENV_KWARG, None)
    kwargs.pop(CALL_KWARG, None)
    d = inst.__dict__
    d["_flame_state"] = state
    try:
        rec = _prepare(state, env)
    except RuntimeError as exc:  # version skew: report it on the first call, not at session start
        d["_flame_error"] = exc
        return
    cls = _load_body(state, rec)
    args, kwargs = _decode_args(rec, args, kwargs)
    d["_flame_obj"] = run_call(cls, args, kwargs, env)


class _MethodStub:
    """A public method of a remote class; calls the same method of the real instance."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, inst: Any, owner: Any = None) -> Any:
        if inst is None:
            return self
        return functools.partial(_invoke_method, inst, self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._name}() of a flame_jupyter remote class must be called on an instance")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("stub", self._name))


def _invoke_method(inst: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    d = inst.__dict__
    env = kwargs.pop(ENV_KWARG, None)
    call = kwargs.pop(CALL_KWARG, None)

    def invoke(args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
        if "_flame_error" in d:
            raise d["_flame_error"]
        rec = _prepare(d["_flame_state"], env)
        args, kwargs = _decode_args(rec, args, kwargs)
        return run_call(getattr(d["_flame_obj"], name), args, kwargs, env)

    return guarded(call, invoke, args, kwargs, env)


def make_remote_class(state: dict[str, Any]) -> type:
    """A class flamepy can serve: one stub per public method of the captured class.

    It contains no bytecode (its members are objects of this module), so cloudpickle ships it
    by value without tying it to the kernel's Python version.
    """
    body: dict[str, Any] = {
        "__init__": _InitDescriptor(state),
        "__module__": _SERVICE_MODULE,
        "__qualname__": state["name"],
        "__doc__": state.get("doc"),
    }
    for name in state.get("methods", ()):
        body[name] = _MethodStub(name)
    if state.get("session_context") is not None:
        body["_session_context"] = state["session_context"]
    return type(state["name"], (), body)


# --------------------------------------------------------------------------- call channel
#
# Everything below travels over Flame's public protocol only: the call's output, progress and
# displays are records appended (patch) to one object of the object cache, which the client
# polls with version-aware gets (patch-only replies); cancel is an object the client creates.

#: Marker of an encoded remote failure inside Flame's task failure message.
ERROR_MARK_START = "\n<<flame-jupyter-error:"
ERROR_MARK_END = ">>"
CANCEL_POLL_DELAY = 0.05  # first cancel check after this long (short calls never pay for one)
CANCEL_POLL_EVERY = 0.5
CANCEL_GRACE = 3.0  # then the instance ends itself so the call really stops
FLUSH_EVERY = 0.2
CHANNEL_TICK = 0.05  # how often the channel thread looks for a call that has run a while
PREVIEW_BYTES = 1 << 20  # results estimated larger than this get a remote preview record


class Cancelled(BaseException):
    """Raised inside a remote call that the user cancelled."""


class RemoteAPI:
    """A picklable handle to an executor-side function of this module (``progress`` & co).

    Notebook code that calls ``flame_jupyter.progress(...)`` captures this object; on the
    executor it resolves to the same function of the bootstrapped module.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _API[self._name](*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("api", self._name))

    def __repr__(self) -> str:
        return f"<flame_jupyter.{self._name}>"


def _current() -> Any:
    return getattr(_rt(), "channel", None)


def _api_progress(done: float, total: float | None = None, message: str = "") -> None:
    """Report progress of the current remote call (no-op outside one)."""
    ch = _current()
    if ch is not None:
        ch.add(("progress", float(done), None if total is None else float(total), str(message), _now()))


def _api_display(*objs: Any, **kwargs: Any) -> None:
    """Show rich output (HTML, images, ...) of a remote call in the notebook cell."""
    ch = _current()
    for obj in objs:
        bundle = mime_bundle(obj)
        if ch is not None:
            ch.add(("display", bundle))
        else:
            print(bundle.get("text/plain", ""))


def _api_import_module(name: str) -> Any:
    """``importlib.import_module``, except flame_jupyter itself, which executors need not have."""
    if name == "flame_jupyter" or name.startswith("flame_jupyter."):
        try:
            return importlib.import_module(name)
        except ImportError:
            return _executor_shim()
    return importlib.import_module(name)


def _executor_shim() -> types.ModuleType:
    """What ``flame_jupyter`` is on an executor without it: the remote-side API."""
    shim = sys.modules.get("_flame_jupyter_executor_shim")
    if shim is None:
        shim = types.ModuleType("flame_jupyter")
        shim.progress = progress
        shim.display = display
        sys.modules["_flame_jupyter_executor_shim"] = shim
    return shim


def _api_run_payload(payload: Any, env: Any = None, **kwargs: Any) -> Any:
    """The ``%%flame`` cell service: run a captured cell (a :class:`RemoteFunction`) with its channel."""
    call = kwargs.pop(CALL_KWARG, None)

    def run(args: tuple[Any, ...], kw: dict[str, Any], env: Any) -> Any:
        return payload(**({ENV_KWARG: env} if env is not None else {}))

    return guarded(call, run, (), {}, env)


_API: dict[str, Callable[..., Any]] = {
    "run_payload": _api_run_payload,
    "progress": _api_progress,
    "display": _api_display,
    "import_module": _api_import_module,
}
progress = RemoteAPI("progress")
display = RemoteAPI("display")
run_payload = RemoteAPI("run_payload")
import_module = RemoteAPI("import_module")


def _now() -> float:
    import time

    return time.time()


def mime_bundle(obj: Any, limit: int = 200_000) -> dict[str, Any]:
    """A small rich representation of ``obj`` (IPython-style ``_repr_*_``), without IPython."""
    bundle: dict[str, Any] = {}
    for mime, meth in (
        ("text/html", "_repr_html_"),
        ("image/png", "_repr_png_"),
        ("image/svg+xml", "_repr_svg_"),
        ("text/markdown", "_repr_markdown_"),
        ("text/latex", "_repr_latex_"),
    ):
        fn = getattr(obj, meth, None)
        if fn is None or isinstance(obj, type):
            continue
        try:
            value = fn()
        except Exception:  # noqa: BLE001 - a broken repr must not fail the call
            continue
        if isinstance(value, tuple):
            value = value[0]
        if value is None:
            continue
        if isinstance(value, bytes):
            import base64

            value = base64.b64encode(value).decode("ascii")
        if isinstance(value, str) and len(value) <= limit:
            bundle[mime] = value
    try:
        text = repr(obj)
    except Exception as exc:  # noqa: BLE001
        text = f"<unrepresentable {type(obj).__name__}: {exc}>"
    bundle["text/plain"] = text if len(text) <= 2000 else text[:2000] + " ..."
    return bundle


def estimate_size(obj: Any) -> int:
    """A cheap size estimate of a result (numpy/pandas/arrow aware)."""
    for attr in ("nbytes",):
        value = getattr(obj, attr, None)
        if isinstance(value, int):
            return value
    mu = getattr(obj, "memory_usage", None)
    if callable(mu) and type(obj).__module__.startswith("pandas"):
        try:
            total = mu(deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        except Exception:  # noqa: BLE001
            return 0
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    return sys.getsizeof(obj)


class _StdProxy(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of an instance: also copies writes to the current call."""

    def __init__(self, name: str, original: Any) -> None:
        self._name = name
        self._original = original

    def write(self, text: str) -> int:
        ch = _current()
        if ch is not None and text:
            ch.add((self._name, text))
        try:
            return self._original.write(text)
        except Exception:  # noqa: BLE001 - the instance's own log must not fail the call
            return len(text)

    def flush(self) -> None:
        try:
            self._original.flush()
        except Exception:  # noqa: BLE001
            pass

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()


def _install_std_proxies() -> None:
    rt = _rt()
    with rt.lock:
        if getattr(rt, "std_installed", False):
            return
        sys.stdout = _StdProxy("stdout", sys.stdout)
        sys.stderr = _StdProxy("stderr", sys.stderr)
        rt.std_installed = True


class _CallChannel:
    """The executor end of one call: buffered records to the cache, cancel checks."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.records: list[Any] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.cancelled = False
        self.thread_id = threading.get_ident()
        self._ref: Any = None
        self._endpoint: str | None = None

    def start(self) -> None:
        """Make this the current call of the process's one channel thread (started on the first
        call). The thread looks every ``CHANNEL_TICK`` seconds and only takes up a call that has
        run ``CANCEL_POLL_DELAY``: a short call never wakes it."""
        self.started = time.monotonic()
        rt = _rt()
        with rt.lock:
            if getattr(rt, "channel_slot", None) is None:
                rt.channel_slot = [self]
                threading.Thread(
                    target=_serve_channels, args=(rt.channel_slot,), name="flame-jupyter-call", daemon=True
                ).start()
            rt.channel_slot[0] = self

    def add(self, record: Any) -> None:
        with self.lock:
            last = self.records[-1] if self.records else None
            if last is not None and record[0] in ("stdout", "stderr") and last[0] == record[0]:
                self.records[-1] = (last[0], last[1] + record[1])  # one record per burst of writes
            else:
                self.records.append(record)

    def _loop(self) -> None:
        """Run by the channel thread once the call has run ``CANCEL_POLL_DELAY``: flush output
        every ``FLUSH_EVERY``, look for a cancel every ``CANCEL_POLL_EVERY``, until it ends."""
        next_cancel_check = 0.0
        while True:
            self.flush()
            elapsed = time.monotonic() - self.started
            if self.info.get("cancel") and elapsed >= next_cancel_check and not self.cancelled:
                next_cancel_check = elapsed + CANCEL_POLL_EVERY
                if self._cancel_requested():
                    self._interrupt()
            if self.done.wait(FLUSH_EVERY):
                return

    def _cache_endpoint(self) -> str:
        if self._endpoint is None:
            from flamepy.core.types import FlameContext

            self._endpoint = FlameContext().cache.endpoint
        return self._endpoint

    def flush(self) -> None:
        with self.lock:
            records, self.records = self.records, []
        if not records or not self.info.get("stream"):
            return
        from flamepy.core import ObjectRef, patch_object, update_object

        try:
            if self._ref is None:
                ref = ObjectRef(endpoint=self._cache_endpoint(), key=self.info["stream"], version=0)
                self._ref = update_object(ref, {"call": self.info.get("id"), "format": 1})
            self._ref = patch_object(self._ref, records)
        except Exception as exc:  # noqa: BLE001 - losing output must not fail the call
            try:
                sys.__stderr__.write(f"flame_jupyter: could not stream call output: {exc}\n")
            except Exception:  # noqa: BLE001
                pass

    def _cancel_requested(self) -> bool:
        from flamepy.core import ObjectRef, get_object

        try:
            get_object(ObjectRef(endpoint=self._cache_endpoint(), key=self.info["cancel"], version=0))
            return True
        except Exception:  # noqa: BLE001 - not found (the usual case) or unreachable
            return False

    def _interrupt(self) -> None:
        import ctypes

        self.cancelled = True
        self.add(("cancel", _now()))
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self.thread_id), ctypes.py_object(Cancelled)
        )
        if not self.done.wait(CANCEL_GRACE):
            # Stuck in C code: end this instance; Flame fails the task, the session goes on.
            self.add(("end", _now(), "cancelled"))
            self.flush()
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    def finish(self, result: Any = None, failed: bool = False) -> None:
        self.done.set()
        if not failed and result is not None and self.info.get("stream"):
            try:
                size = estimate_size(result)
            except Exception:  # noqa: BLE001
                size = 0
            if size > PREVIEW_BYTES:
                self.add(("preview", mime_bundle(result), size))
        self.flush()


def _serve_channels(slot: list[Any]) -> None:
    """The channel thread: flush output and watch for cancel of the current call once it has run
    a moment (an instance runs one task at a time; the loop ends as soon as the call finishes)."""
    while True:
        time.sleep(CHANNEL_TICK)
        channel = slot[0]
        if channel is None or channel.done.is_set():
            continue
        if time.monotonic() - channel.started < CANCEL_POLL_DELAY:
            continue
        try:
            channel._loop()
        except Exception:  # noqa: BLE001 - a broken channel must not stop the next call's
            pass


def guarded(
    call: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], env: Any
) -> Any:
    """Run one remote call with its channel: output and progress stream to the client, cancel
    works, and any failure leaves as one Exception whose message carries type and traceback."""
    channel = None
    if isinstance(call, dict):
        _install_std_proxies()
        channel = _CallChannel(call)
        _rt().channel = channel
        channel.start()
    if channel is None:  # a plain flamepy call: exceptions stay as they are
        return fn(args, kwargs, env)
    try:
        result = fn(args, kwargs, env)
    except BaseException as exc:  # noqa: BLE001 - re-raised as a plain Exception below
        _rt().channel = None
        channel.finish(failed=True)
        raise _encoded_failure(exc, cancelled=channel.cancelled) from None
    _rt().channel = None
    channel.finish(result)
    return result


class RemoteFailure(Exception):
    """The one exception type a failed call leaves the executor with (flamepy sends its text)."""


def _encoded_failure(exc: BaseException, cancelled: bool = False) -> RemoteFailure:
    import base64
    import json
    import traceback

    if cancelled or isinstance(exc, Cancelled):
        module, name, message, tb = "flame_jupyter", "Cancelled", "cancelled by the user", ""
    else:
        module = type(exc).__module__ or ""
        name = type(exc).__qualname__
        message = str(exc)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        tb = _trim_traceback(tb)
    record = {"module": module, "type": name, "message": message, "traceback": tb}
    blob = base64.b64encode(json.dumps(record).encode()).decode()
    return RemoteFailure(f"{name}: {message}{ERROR_MARK_START}{blob}{ERROR_MARK_END}")


def _trim_traceback(tb: str) -> str:
    """Drop frames of this module and of flamepy: the user's frames are what matters."""
    lines = tb.splitlines(keepends=True)
    out: list[str] = []
    skip = False
    for line in lines:
        if line.startswith('  File "'):
            skip = (
                "<flame_jupyter.remote>" in line or "/flamepy/" in line or "flame_jupyter/remote.py" in line
            )
        elif not line.startswith("    "):
            skip = False
        if not skip:
            out.append(line)
    return "".join(out)
