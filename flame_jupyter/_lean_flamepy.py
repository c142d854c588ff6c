"""A lean import of flamepy 0.6.0's client (the second seam onto flamepy's internals).

``import flamepy`` runs ``flamepy/__init__``, which imports the instance server (FastAPI,
uvicorn, pydantic) that a client never uses, and its cache module imports pandas: about a second
and 100+ MB per process. :func:`lean_import` loads the same modules without those; the first
use of a package-level name (``flamepy.FlameError``) runs the real ``__init__`` then, so code
that imports flamepy itself sees the whole package. ``FLAME_JUPYTER_LEAN_IMPORT=0`` turns it off.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class _PandasWhenUsed:
    """flamepy's cache module's ``pd``: pandas, imported on first real use. Until pandas is
    imported in this process no object can be a DataFrame, so type checks need no import."""

    class _NoneYet:
        pass

    def __getattr__(self, name: str) -> Any:
        if "pandas" not in sys.modules and name in ("DataFrame", "Series"):
            return self._NoneYet
        import pandas

        return getattr(pandas, name)


def _lazy_module(name: str) -> None:
    """``name`` loads on its first attribute use (the standard library's ``LazyLoader``)."""
    import importlib.util

    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def lean_import() -> None:
    """Load flamepy's client without its package ``__init__`` and without pandas.

    ``import flamepy`` runs ``flamepy/__init__``, which imports the instance server (FastAPI,
    uvicorn, pydantic) a client never uses, and its cache module imports pandas: about a second
    and 100+ MB per process. Here ``flamepy`` starts as a shell package whose submodules import
    as usual; the first use of a package-level name (``flamepy.Runner``) runs the real
    ``__init__`` then, so user code that imports flamepy sees the whole package. Call it before
    anything imports flamepy (``flame_jupyter/__init__`` does); ``FLAME_JUPYTER_LEAN_IMPORT=0``
    turns it off.
    """
    if "flamepy" in sys.modules or os.environ.get("FLAME_JUPYTER_LEAN_IMPORT", "1") == "0":
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec("flamepy")
    if spec is None or not spec.submodule_search_locations or spec.loader is None:
        return
    shell = types.ModuleType("flamepy")
    shell.__path__ = list(spec.submodule_search_locations)
    shell.__file__ = spec.origin
    shell.__spec__ = spec
    shell.__package__ = "flamepy"
    loader = spec.loader
    submodules = {
        name.removesuffix(".py")
        for path in shell.__path__
        for name in os.listdir(path)
        if not name.startswith("_") and (name.endswith(".py") or os.path.isdir(os.path.join(path, name)))
    }

    def complete(name: str) -> Any:
        if name.startswith("__") or name in submodules:  # submodules load through the import system
            raise AttributeError(name)
        del shell.__dict__["__getattr__"]
        exec(loader.get_code("flamepy"), shell.__dict__)  # type: ignore[attr-defined]
        try:
            return shell.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'flamepy' has no attribute {name!r}") from None

    shell.__getattr__ = complete  # type: ignore[attr-defined]
    sys.modules["flamepy"] = shell
    _lazy_module("requests")  # flamepy.runner.storage's: only for http package storage
    if "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # flamepy.core.cache: "no pandas"
    try:
        from flamepy.core import cache
    finally:
        if sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]
    cache.pd = _PandasWhenUsed()
    cache._HAS_PANDAS = True
