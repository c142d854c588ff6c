"""Capture failures: what cannot travel, and how the user reached it.

>>> err = CaptureError.unpicklable(["load_rows", "DB", "conn"], "sqlite3.Connection", "it is a database")
>>> str(err).startswith("cannot capture 'conn' (sqlite3.Connection), reached via load_rows -> DB -> conn")
True
"""

from __future__ import annotations

import collections
import functools
import io
import types
from typing import Any

_LOCK = "locks only coordinate threads inside one process; create it on the executor instead (inside the function, or in __init__ of the class)"
_SOCKET = "network connections cannot be sent to another process; open the connection inside the remote code"
_FILE = "open files cannot be sent to another process; pass the file name and open it inside the remote code"
_DB = "database connections cannot be sent to another process; connect inside the remote code (e.g. sqlite3.connect(path) in the function or in __init__)"
_GEN = "generators cannot be sent to another process; pass a list (list(gen)) or the function that creates the generator"
_FRAME = "stack frames and tracebacks cannot be sent to another process"
_KERNEL = "it belongs to the notebook kernel (IPython/Jupyter), which executors do not have"
_FLAME = (
    "flame_jupyter objects (services, futures, runners) only work in the notebook; pass plain values instead"
)
_MAGIC = "IPython magics and shell commands (%magic, !cmd, get_ipython()) only work in the notebook kernel"

_KERNEL_MODULES = ("IPython.", "ipykernel.", "ipywidgets.", "comm.", "zmq.", "jupyter_client.", "tornado.")


class CaptureError(Exception):
    """Notebook code (or something it uses) cannot be sent to an executor.

    Raised before anything is sent. ``name`` is the offending variable, ``type_name`` its type
    and ``chain`` the references that led to it (root first).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        type_name: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.name = name
        self.type_name = type_name
        self.chain = tuple(chain)

    @classmethod
    def unpicklable(cls, chain: list[str], type_name: str, reason: str) -> CaptureError:
        name = chain[-1] if chain else "?"
        message = "cannot capture {!r} ({}), reached via {}: {}. Nothing was sent.".format(
            name,
            type_name,
            " -> ".join(chain),
            reason,
        )
        return cls(message, name=name, type_name=type_name, chain=tuple(chain))


class Blocked(Exception):
    """Raised inside the pickler for objects that must not travel."""

    def __init__(self, obj: Any, reason: str) -> None:
        super().__init__(reason)
        self.obj = obj
        self.reason = reason


_PRETTY = {"_thread.lock": "threading.Lock", "_thread.RLock": "threading.RLock"}


def type_name(obj: Any) -> str:
    """Readable qualified type name (``sqlite3.Connection``, ``threading.Lock``)."""
    t = type(obj)
    mod = t.__module__
    if mod == "builtins":
        return t.__qualname__
    if mod == "_io":
        mod = "io"
    full = f"{mod}.{t.__qualname__}"
    return _PRETTY.get(full, full)


@functools.lru_cache(maxsize=1)
def _blocked_types() -> tuple[tuple[tuple[type, ...], str], ...]:
    import _thread
    import socket
    import sqlite3
    import threading

    locks: tuple[type, ...] = (_thread.LockType, type(threading.RLock()))
    if hasattr(threading, "_PyRLock"):
        locks += (threading._PyRLock,)
    return (
        (locks, _LOCK),
        ((socket.socket,), _SOCKET),
        ((sqlite3.Connection, sqlite3.Cursor), _DB),
        ((types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType), _GEN),
        ((types.FrameType, types.TracebackType), _FRAME),
    )


def blocked_reason(obj: Any) -> str | None:
    """Why ``obj`` must not be captured, or ``None`` if it may be."""
    for kinds, reason in _blocked_types():
        if isinstance(obj, kinds):
            return reason
    if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)):
        return _FILE
    mod = type(obj).__module__ or ""
    if mod.startswith(_KERNEL_MODULES) or mod in ("ipykernel", "IPython"):
        return _KERNEL
    if mod.startswith("flame_jupyter") and not mod.startswith("flame_jupyter.remote"):
        return _FLAME
    return None


MAGIC_REASON = _MAGIC


# --------------------------------------------------------------------------- paths


def _children(obj: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        out = [(f"[{k!r}]", v) for k, v in list(obj.items())[:10000]]
    elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        out = [(f"[{i}]", v) for i, v in enumerate(list(obj)[:10000])]
    elif isinstance(obj, types.FunctionType):
        if obj.__closure__:
            for var, cell in zip(obj.__code__.co_freevars, obj.__closure__, strict=False):
                try:
                    out.append((var, cell.cell_contents))
                except ValueError:
                    pass
        out += [(f"<default {i}>", v) for i, v in enumerate(obj.__defaults__ or ())]
        out += list((obj.__kwdefaults__ or {}).items())
        out += list(vars(obj).items())
    elif isinstance(obj, types.MethodType):
        out = [("__self__", obj.__self__), ("__func__", obj.__func__)]
    elif isinstance(obj, functools.partial):
        out = [("func", obj.func)] + [(f"[{i}]", v) for i, v in enumerate(obj.args)]
        out += list(obj.keywords.items())
    elif isinstance(obj, type):
        out = [(k, v) for k, v in vars(obj).items() if not (k.startswith("__") and k.endswith("__"))]
    elif isinstance(obj, types.ModuleType):
        out = []
    else:
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            out = list(d.items())
        for klass in type(obj).__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                try:
                    out.append((slot, getattr(obj, slot)))
                except AttributeError:
                    pass
    return out


def find_path(root: Any, target: Any, *, limit: int = 50000) -> list[str] | None:
    """Labels of the shortest reference path from ``root`` to ``target`` (``[]`` if same)."""
    if root is target:
        return []
    seen = {id(root)}
    queue = collections.deque([(root, [])])
    visited = 0
    while queue and visited < limit:
        obj, path = queue.popleft()
        visited += 1
        try:
            children = _children(obj)
        except Exception:  # noqa: BLE001 - diagnostics must not fail
            continue
        for label, child in children:
            if child is target:
                return [*path, label]
            if id(child) not in seen:
                seen.add(id(child))
                queue.append((child, [*path, label]))
    return None


def error_for(
    chain: list[str], root: Any, failed: tuple[Any, BaseException] | None, exc: BaseException
) -> CaptureError:
    """Turn a pickling failure below ``root`` (reached via ``chain``) into a CaptureError."""
    obj, inner = failed if failed is not None else (root, exc)
    if isinstance(exc, Blocked):
        obj, inner = exc.obj, exc
    if isinstance(inner, Blocked):
        reason = inner.reason
    elif isinstance(inner, RecursionError):
        reason = "it is nested too deeply to be pickled"
    else:
        reason = f"it cannot be pickled ({type(inner).__name__}: {inner})"
    path = find_path(root, obj)
    full = list(chain) + (path if path is not None else [f"<{type_name(obj)}>"])
    return CaptureError.unpicklable(full, type_name(obj), reason)
