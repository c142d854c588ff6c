"""How this package reaches an executor: as compressed source, never as bytecode.

Every object of the package pickles (via ``__reduce__``) to a call of a small stdlib-only
``_bootstrap`` function, itself pickled as ``exec`` of :data:`_BOOT_STUB`. The stub carries the
package's sources, an ordered ``[[module, source], ...]`` list (:data:`MODULES`), as one zlib
blob; on the executor it ``exec``\\ s them into a synthetic package in ``sys.modules`` once per
process, named after a hash of all sources, and asks it to rebuild the object (``_build``).
Source is portable across Python versions, so a version mismatch between kernel and executor
reaches ``versions.check_versions`` and becomes a clear ``RuntimeError`` instead of an obscure
unpickling failure.
"""

from __future__ import annotations

import hashlib
import json
import linecache
import operator
import os
import threading
import zlib
from collections.abc import Callable
from typing import Any

#: The package's modules in the order the executor runs them (each imports only earlier ones,
#: at import time); ``__init__`` is the package itself, run last.
MODULES = (
    "wire",
    "versions",
    "runtime",
    "bootstrap",
    "reprs",
    "notebook_libs",
    "failure",
    "stream",
    "large",
    "worker",
    "channel",
    "chunks",
    "batches",
    "pickling",
    "namespace",
    "execution",
    "nested_futures",
    "nested",
    "__init__",
)

#: Pseudo-filename of a module's source on an executor (tracebacks, ``linecache``).
FILENAME_PREFIX = "<flame_jupyter.remote"

#: Start of the synthetic package's name in an executor's ``sys.modules`` (then a source hash).
PACKAGE_PREFIX = "_flame_jupyter_remote_"


def source_filename(module: str) -> str:
    return FILENAME_PREFIX + (">" if module == "__init__" else f".{module}>")


_BOOT_STUB = b"""
def _bootstrap(kind, state):
    import json, sys, types, zlib
    pkg = sys.modules.get(_NAME)
    if pkg is None or "_build" not in pkg.__dict__:
        pkg = types.ModuleType(_NAME)
        pkg.__path__ = []
        pkg.__package__ = _NAME
        made = [_NAME]
        sys.modules[_NAME] = pkg
        try:
            for name, source in json.loads(zlib.decompress(_BLOB)):
                if name == "__init__":
                    mod, filename = pkg, "<flame_jupyter.remote>"
                else:
                    mod, filename = types.ModuleType(_NAME + "." + name), "<flame_jupyter.remote." + name + ">"
                    mod.__package__ = _NAME
                    sys.modules[mod.__name__] = mod
                    made.append(mod.__name__)
                mod.__dict__["_FLAME_SOURCE"] = _BLOB
                exec(compile(source, filename, "exec"), mod.__dict__)
                if mod is not pkg:
                    setattr(pkg, name, mod)
        except BaseException:
            for name in made:
                sys.modules.pop(name, None)
            raise
    return pkg._build(kind, state)
"""

_boot_cache: list[Any] = []
_boot_lock = threading.Lock()
#: What rebuilds an object in this process (``execution._build``, registered when it is imported).
_builder: list[Callable[[str, Any], Any]] = []


def set_builder(build: Callable[[str, Any], Any]) -> None:
    """Register the function that rebuilds this package's objects from ``(kind, state)``."""
    _builder[:] = [build]


def _read_sources() -> bytes:
    here = os.path.dirname(os.path.abspath(__file__))
    sources = []
    for name in MODULES:
        with open(os.path.join(here, name + ".py"), encoding="utf-8") as fh:
            sources.append([name, fh.read()])
    return zlib.compress(json.dumps(sources).encode("utf-8"), 9)


if "_FLAME_SOURCE" not in globals():  # imported normally (not bootstrapped from source)
    _FLAME_SOURCE = _read_sources()


def _source_blob() -> bytes:
    """zlib-compressed sources of this package (read at import, so they match the loaded code)."""
    return globals()["_FLAME_SOURCE"]


def sources() -> list[tuple[str, str]]:
    """The ``(module, source)`` pairs that travel, in :data:`MODULES` order."""
    return [(name, text) for name, text in json.loads(zlib.decompress(_source_blob()))]


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

    def __call__(self, kind: str, state: Any) -> Any:  # in-process (copy.deepcopy): no bootstrap
        return _builder[0](kind, state)

    def __reduce__(self) -> tuple[Any, ...]:
        return (operator.getitem, (self._ns, "_bootstrap"))


def _boot_fn() -> _BootFn:
    """The (cached) bootstrap callable; identical objects let pickle memoize the source once."""
    with _boot_lock:
        if not _boot_cache:
            blob = _source_blob()
            name = PACKAGE_PREFIX + hashlib.sha256(blob).hexdigest()[:16]
            env = {"__name__": "_flame_jupyter_boot", "_NAME": name, "_BLOB": blob}
            run = _Reduced(exec, (_BOOT_STUB, env))
            ns = _Reduced(operator.getitem, ((run, env), 1))
            _boot_cache.append(_BootFn(ns))
        return _boot_cache[0]


def _register_own_source() -> None:
    """Make the package's sources visible to ``linecache`` on an executor (tracebacks)."""
    if "_FLAME_SOURCE" not in globals() or "__file__" in globals():
        return
    if source_filename("__init__") in linecache.cache:
        return
    for module, text in sources():
        name = source_filename(module)
        linecache.cache[name] = (len(text), None, text.splitlines(keepends=True), name)
