"""Modules that sit next to the notebook and must travel by value.

A module is *local* when it was imported from a file that is neither in the standard library
nor in an installed distribution (site-packages, editable installs): typically a ``helpers.py``
in the notebook's directory. Executors do not have it, so its source files travel with the
payload and are put on ``sys.path`` remotely. Everything else travels by reference (import).
What the notebook changed in such a module since import (:func:`changed_attributes`) travels with
each call and is set on the executor's copy.

>>> local_top("json") is None
True
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import os
import site
import sys
import sysconfig
import types
from collections.abc import Callable
from typing import Any

#: Never shipped by value even if they look local (they are the notebook machinery itself).
NEVER_BY_VALUE = frozenset(
    {"__main__", "flame_jupyter", "IPython", "ipykernel", "ipywidgets", "jupyter_client"}
)

#: Refuse to ship local packages bigger than this (they should be installed instead).
MAX_LOCAL_MODULE_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def _system_prefixes() -> tuple[str, ...]:
    paths = set(sysconfig.get_paths().values())
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        paths.add(user)
    for name in ("prefix", "base_prefix", "exec_prefix", "base_exec_prefix"):
        paths.add(getattr(sys, name, ""))
    real = {os.path.realpath(p) for p in paths if p}
    return tuple(sorted(p.rstrip(os.sep) + os.sep for p in real if p != os.sep))


@functools.lru_cache(maxsize=1)
def _installed_tops() -> frozenset[str]:
    try:
        return frozenset(importlib.metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata must not break capture
        return frozenset()


@functools.lru_cache(maxsize=4096)
def local_top(modname: str) -> str | None:
    """Top-level name of ``modname`` if it is a local (not installed) module, else ``None``."""
    top = modname.partition(".")[0]
    if not top or top in NEVER_BY_VALUE or top in sys.builtin_module_names:
        return None
    if top in getattr(sys, "stdlib_module_names", ()):
        return None
    mod = sys.modules.get(top)
    path = getattr(mod, "__file__", None) if mod is not None else None
    if not path:
        return None
    real = os.path.realpath(path)
    if real.startswith(_system_prefixes()):
        return None
    if top in _installed_tops():
        return None
    return top


_file_cache: dict[str, tuple[int, int, bytes]] = {}


def _read(path: str) -> bytes:
    st = os.stat(path)
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
        return cached[2]
    with open(path, "rb") as fh:
        data = fh.read()
    _file_cache[path] = (st.st_mtime_ns, st.st_size, data)
    return data


def module_files(top: str) -> dict[str, bytes]:
    """Source files of a local module or package, keyed by path relative to ``sys.path``.

    Raises ``ValueError`` if the module is not plain Python source or is too large.
    """
    mod = sys.modules[top]
    path = os.path.realpath(mod.__file__)
    files: dict[str, bytes] = {}
    if hasattr(mod, "__path__"):
        root = os.path.dirname(path)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    full = os.path.join(dirpath, fn)
                    rel = os.path.relpath(full, os.path.dirname(root)).replace(os.sep, "/")
                    files[rel] = _read(full)
    elif path.endswith(".py"):
        files[top + ".py"] = _read(path)
    else:
        raise ValueError(f"local module {top!r} is not Python source ({path}); install it on the executors")
    size = sum(len(v) for v in files.values())
    if size > MAX_LOCAL_MODULE_BYTES:
        raise ValueError(
            f"local package {top!r} has {size >> 20} MiB of source; install it on the executors instead"
        )
    return files


def files_digest(files: dict[str, bytes]) -> str:
    """Content digest of a module's files."""
    h = hashlib.blake2b(digest_size=20)
    for rel in sorted(files):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.blake2b(files[rel], digest_size=20).digest())
    return h.hexdigest()


# -- attributes the notebook changed ---------------------------------------------------------------
_IMMUTABLE = (bool, int, float, complex, str, bytes, type(None))


def _frozen(value: object) -> bool:
    if isinstance(value, _IMMUTABLE):
        return True
    return isinstance(value, (tuple, frozenset)) and all(_frozen(v) for v in value)


@functools.lru_cache(maxsize=256)
def _source_constants(path: str, mtime_ns: int, size: int) -> dict[str, object]:
    """Top-level ``NAME = <immutable literal>`` of a source file (the last binding wins; a name
    bound otherwise at top level is dropped)."""
    try:
        tree = ast.parse(_read(path))
    except (SyntaxError, ValueError, OSError):
        return {}
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            for name in _bound_names(node):
                out.pop(name, None)
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            literal = _NOT_LITERAL
        for target in targets:
            if isinstance(target, ast.Name):
                if literal is not _NOT_LITERAL and _frozen(literal):
                    out[target.id] = literal
                else:
                    out.pop(target.id, None)
    return out


_NOT_LITERAL = object()


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).partition(".")[0] for a in node.names]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def changed_attributes(
    tops: Any, is_notebook_code: Callable[[object], bool]
) -> list[tuple[str, str, object]]:
    """``(module, attribute, current value)`` of the local modules under ``tops`` that the notebook
    changed since import: a top-level constant of the source (``NAME = <literal>``) now bound to
    another value, or any attribute now bound to notebook code (a function or class). Sending the
    kernel's current value is always what the kernel's own code sees; the source comparison only
    keeps the rest home. Per call: ~4 us for a module of a few constants, ~50 us for 200."""
    out: list[tuple[str, str, object]] = []
    for top in tops:
        for modname in _submodules(top, len(sys.modules)):
            mod = sys.modules.get(modname)
            if mod is None:
                continue
            attrs = getattr(mod, "__dict__", {})
            path = getattr(mod, "__file__", None)
            consts: dict[str, object] = {}
            if isinstance(path, str) and path.endswith(".py"):
                try:
                    st = os.stat(path)
                    consts = _source_constants(path, st.st_mtime_ns, st.st_size)
                except OSError:
                    pass
            for name, src in consts.items():
                value = attrs.get(name, _NOT_LITERAL)
                if value is not _NOT_LITERAL and not (type(value) is type(src) and _same(value, src)):
                    out.append((modname, name, value))
            for name, value in list(attrs.items()):
                if isinstance(value, _CODE) and name not in consts and is_notebook_code(value):
                    out.append((modname, name, value))
    return out


_CODE = (types.FunctionType, type)


@functools.lru_cache(maxsize=64)
def _submodules(top: str, _loaded: int) -> tuple[str, ...]:
    """``top`` and its loaded submodules (cached while the number of loaded modules stays the same)."""
    prefix = top + "."
    return tuple(n for n in list(sys.modules) if n == top or n.startswith(prefix))


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a value that cannot compare is sent
        return False
