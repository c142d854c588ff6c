"""A payload's namespace on the executor: the notebook globals its code sees, kept per process.

Payloads with the same id share one namespace; each call's env (:class:`.wire.Env`) refreshes
it. Local modules are installed as source files (with the attributes the notebook changed set
on them), notebook cells registered for tracebacks.
"""

from __future__ import annotations

import atexit
import builtins
import importlib
import linecache
import os
import shutil
import struct
import sys
import tempfile
import types
from collections import OrderedDict
from typing import Any

from .channel import display, import_module, progress
from .large import read_file_parts
from .pickling import Loader
from .runtime import _blob, _np, _rt
from .versions import check_versions
from .wire import ARG_REF_TAG, ARG_TAG, PARTS_MAGIC, Env, PayloadState

_MAX_NAMESPACES = 64
_REMOTE_BUILTINS = {"display": display, "progress": progress}  # what remote code may call besides print


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


_UNSET = object()


def _apply_attrs(attrs: Any, loader: Any, refs: dict[str, Any]) -> None:
    """Set the module attributes the notebook changed (:data:`.wire.EnvAttr`) for this call; those
    an earlier call set and this one does not list get their imported value back."""
    rt = _rt()
    with rt.lock:
        saved = getattr(rt, "attr_saved", None)
        if saved is None:
            saved = rt.attr_saved = {}  # (module, attribute) -> (module object, imported value)
    wanted = {(m, a) for m, a, _, _ in attrs}
    for key in [k for k in saved if k not in wanted]:
        mod, original = saved.pop(key)
        if sys.modules.get(key[0]) is mod:  # not re-imported since (a new module is fresh anyway)
            if original is _UNSET:
                mod.__dict__.pop(key[1], None)
            else:
                setattr(mod, key[1], original)
    for modname, attr, digest, data in attrs:
        try:
            mod = import_module(modname)
            value = _decoded_large(digest, refs, loader) if data is None else loader.loads(data)
        except Exception as exc:
            raise _load_error(f"{modname}.{attr}", exc) from exc
        if (modname, attr) not in saved or saved[(modname, attr)][0] is not mod:
            saved[(modname, attr)] = (mod, mod.__dict__.get(attr, _UNSET))
        setattr(mod, attr, value)


def _is_findable(obj: Any) -> bool:
    """``obj`` is what pickle finds under its module and qualified name in this process."""
    found: Any = sys.modules.get(obj.__module__ or "")
    for part in (obj.__qualname__ or "").split("."):
        found = getattr(found, part, None)
    return found is obj


def _reduce_notebook_code(pickler: Any, obj: Any) -> Any:
    """``reducer_override`` of multiprocessing's pickler: notebook functions and classes (module
    ``__main__``, not findable there by name on an executor) travel to child processes by value
    with cloudpickle, with the globals they use -- as joblib sends them; anything else as usual."""
    if isinstance(obj, (types.FunctionType, type)) and obj.__module__ == "__main__" and not _is_findable(obj):
        import cloudpickle

        return cloudpickle.loads, (cloudpickle.dumps(obj),)
    return NotImplemented


def install_pool_pickling() -> None:
    """Let process pools inside a task (``ProcessPoolExecutor``, ``multiprocessing.Pool``, any
    start method) use notebook functions and classes, once per executor process."""
    rt = _rt()
    with rt.lock:
        if getattr(rt, "pool_pickling", False):
            return
        rt.pool_pickling = True
    from multiprocessing import reduction

    if "reducer_override" not in reduction.ForkingPickler.__dict__:  # leave another override alone
        reduction.ForkingPickler.reducer_override = _reduce_notebook_code  # type: ignore[attr-defined]


def _new_namespace() -> dict[str, Any]:
    return {"__name__": "__main__", "__builtins__": builtins}


def _namespace(state: PayloadState) -> dict[str, Any]:
    """Namespace record of a payload (created once per process, then reused)."""
    rt = _rt()
    with rt.lock:
        rec = rt.namespaces.get(state["id"])
        if rec is not None:
            rt.namespaces.move_to_end(state["id"])
            return rec
    install_pool_pickling()
    rec = {"G": _new_namespace(), "applied": {}, "refs": dict(state.get("refs") or {}), "env": None}
    for name, api in _REMOTE_BUILTINS.items():
        rec["G"].setdefault(name, api)
    apply_env(rec, state.get("env"))
    with rt.lock:
        rt.namespaces[state["id"]] = rec
        while len(rt.namespaces) > _MAX_NAMESPACES:
            rt.namespaces.popitem(last=False)
    return rec


def apply_env(
    rec: dict[str, Any], env: Env | None, *, session: bool = False, only_missing: bool = False
) -> None:
    """Bind the env's globals into the namespace record ``rec``.

    Unchanged code entries and modules are kept (same objects); values are decoded afresh so
    every call sees the notebook's value, not one mutated by an earlier call. Names the env no
    longer has are dropped, except:

    - ``session`` (a ``%%flame --session`` cell): names earlier cells received stay, and names
      the session's own cells assigned (``rec["owned"]``) win over the notebook's values;
    - ``only_missing`` (a snapshot's call): only names the namespace lacks are bound (what its
      arguments' code needs); the frozen globals stay as they are.
    """
    if env is None:
        return
    _install_modules(env.get("modules"))
    _register_lines(env.get("lines") or {})
    G = rec["G"]
    applied = rec["applied"]
    refs = rec["refs"]
    refs.update(env.get("refs") or {})
    owned = rec.setdefault("owned", set()) if session else set()
    loader = Loader(G, refs)
    seen = set()
    for name, kind, digest, data in env.get("entries", ()):
        seen.add(name)
        if name in owned or (only_missing and name in G):
            continue
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
    if only_missing:
        return
    _apply_attrs(env.get("attrs") or (), loader, refs)
    if not session:
        for name in [n for n in applied if n not in seen]:
            del applied[name]
            G.pop(name, None)
    rec["env"] = env


def track_assigned(rec: dict[str, Any], before: dict[str, Any]) -> None:
    """Remember the names a session cell bound (new or rebound since ``before``, a copy of the
    namespace taken before it ran): from now on they are the session's own."""
    G = rec["G"]
    owned = rec.setdefault("owned", set())
    owned.update(k for k, v in G.items() if k not in before or before[k] is not v)
    owned.difference_update(k for k in before if k not in G)


def _load_error(what: str, exc: BaseException) -> RuntimeError:
    hint = " (install it on the executors)" if isinstance(exc, ImportError) else ""
    return RuntimeError(
        f"flame_jupyter: cannot load {what} on this executor: {type(exc).__name__}: {exc}{hint}"
    )


def _load_body(state: PayloadState, rec: dict[str, Any]) -> Any:
    try:
        return Loader(rec["G"], rec["refs"]).loads(state["body"])
    except Exception as exc:
        raise _load_error(f"the captured {state['kind']} {state.get('name')!r}", exc) from exc


def _prepare(state: PayloadState, env: Any) -> dict[str, Any]:
    check_versions(state["header"])
    rec = _namespace(state)
    if env is None and state["kind"] == "cell" and not state.get("snapshot"):
        # A cell carries its env: a session's later cells refresh the namespace they share.
        cell_env = state.get("env")
        if cell_env is not None and rec["env"] is not cell_env:
            apply_env(rec, cell_env, session=True)
    elif env is not None:
        apply_env(rec, env, only_missing=bool(state.get("snapshot")))
    return rec


def _decode_args(rec: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The call's arguments, with the capture engine's markers (:data:`.wire.ARG_TAG`,
    :data:`.wire.ARG_REF_TAG`) rebuilt in the payload's namespace."""
    loader = None

    def dec(v: Any) -> Any:
        nonlocal loader
        if type(v) is not tuple or len(v) not in (2, 3, 4) or v[0] not in (ARG_TAG, ARG_REF_TAG):
            return v
        if loader is None:
            loader = Loader(rec["G"], rec["refs"])
        if v[0] == ARG_TAG and len(v) == 2:
            return loader.loads(v[1])
        if v[0] == ARG_REF_TAG and len(v) in (3, 4):
            mapped = read_file_parts(v[3]) if len(v) == 4 else None  # private copy-on-write map
            if mapped is not None:
                return loader.loads(mapped[0], buffers=mapped[1:])
            stream, *buffers = _argument_parts(v[2])
            # copies: the argument is the call's own, writable (as a local call's would be)
            return loader.loads(stream, buffers=[bytearray(b) for b in buffers])
        return v

    return tuple(dec(a) for a in args), {k: dec(v) for k, v in kwargs.items()}


def _argument_parts(ref: Any) -> list[Any]:
    """The parts of a large argument (stream, then buffers): from an Arrow table in Flame's
    object cache, or from the joined bytes of another store (layout in :data:`.wire.ARG_REF_TAG`)."""
    local = getattr(_rt(), "local_objects", None)
    if local and getattr(ref, "key", None) in local:
        data: Any = local[ref.key]
    else:
        import flamepy.core

        data = flamepy.core.get_object(ref)
    if hasattr(data, "column") and hasattr(data, "num_rows"):  # a pyarrow Table
        return [scalar.as_buffer() for chunk in data.column("part").chunks for scalar in chunk]
    view = memoryview(data)
    if bytes(view[: len(PARTS_MAGIC)]) != PARTS_MAGIC:
        raise RuntimeError(f"flame_jupyter: object {ref!r} is not a large argument")
    at = len(PARTS_MAGIC)
    (count,) = struct.unpack_from("<I", view, at)
    lengths = struct.unpack_from(f"<{count}Q", view, at + 4)
    at += 4 + 8 * count
    parts = []
    for n in lengths:
        parts.append(view[at : at + n])
        at += n
    return parts
