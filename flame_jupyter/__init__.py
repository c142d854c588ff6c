"""flame_jupyter: run notebook code on Flame.

In a notebook::

    %load_ext flame_jupyter

From Python (no notebook, no IPython needed)::

    import flame_jupyter as fj
    with fj.Runner() as rr:
        square = rr.service(lambda x: x * x)
        print(square(4).get())          # 16

Inside remote code, ``flame_jupyter.progress(done, total, message)`` reports progress and
``print`` output streams back to the notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from flame_jupyter._lean_flamepy import lean_import as _lean_import  # noqa: E402 - before any flamepy import

_lean_import()

if TYPE_CHECKING:  # what tools (type checkers, IDEs) see; at run time the names load lazily
    from flame_jupyter.async_runner import AsyncRunner
    from flame_jupyter.capture import CaptureError, capture
    from flame_jupyter.check import check
    from flame_jupyter.connection import connect, disconnect
    from flame_jupyter.errors import CancelledError, FlameJupyterError, RemoteError
    from flame_jupyter.futures import ObjectFuture, as_completed, get, ref, select, wait
    from flame_jupyter.remote import display, progress
    from flame_jupyter.runner import Runner, Service
    from flame_jupyter.status_panel import panel

_LAZY = {
    "Runner": "flame_jupyter.runner",
    "AsyncRunner": "flame_jupyter.async_runner",
    "Service": "flame_jupyter.runner",
    "ObjectFuture": "flame_jupyter.futures",
    "get": "flame_jupyter.gather",
    "ref": "flame_jupyter.gather",
    "wait": "flame_jupyter.gather",
    "select": "flame_jupyter.gather",
    "as_completed": "flame_jupyter.gather",
    "connect": "flame_jupyter.connection",
    "disconnect": "flame_jupyter.connection",
    "capture": "flame_jupyter.capture",
    "check": "flame_jupyter.check",
    "CaptureError": "flame_jupyter.capture",
    "RemoteError": "flame_jupyter.errors",
    "CancelledError": "flame_jupyter.errors",
    "FlameJupyterError": "flame_jupyter.errors",
    "progress": "flame_jupyter.remote",
    "display": "flame_jupyter.remote",
    "panel": "flame_jupyter.status_panel",
}

__all__ = [
    "AsyncRunner",
    "CancelledError",
    "CaptureError",
    "FlameJupyterError",
    "ObjectFuture",
    "RemoteError",
    "Runner",
    "Service",
    "as_completed",
    "capture",
    "check",
    "connect",
    "disconnect",
    "display",
    "get",
    "panel",
    "progress",
    "ref",
    "select",
    "wait",
]  # = sorted(_LAZY); tests/test_architecture.py checks it


def __dir__() -> list[str]:
    """``dir(flame_jupyter)`` and TAB completion show the public API, not internal modules."""
    return sorted([*__all__, "__version__", "load_ipython_extension", "unload_ipython_extension"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flame_jupyter' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext flame_jupyter``: register the magics and connect."""
    from flame_jupyter.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext flame_jupyter``: close what the extension opened."""
    from flame_jupyter.extension import unload

    unload(ipython)
