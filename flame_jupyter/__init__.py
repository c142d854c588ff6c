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

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Runner": "flame_jupyter.sdk",
    "AsyncRunner": "flame_jupyter.sdk",
    "Service": "flame_jupyter.sdk",
    "ObjectFuture": "flame_jupyter.futures",
    "get": "flame_jupyter.futures",
    "ref": "flame_jupyter.futures",
    "wait": "flame_jupyter.futures",
    "select": "flame_jupyter.futures",
    "as_completed": "flame_jupyter.futures",
    "connect": "flame_jupyter.connection",
    "disconnect": "flame_jupyter.connection",
    "capture": "flame_jupyter.capture",
    "CaptureError": "flame_jupyter.capture",
    "RemoteError": "flame_jupyter.errors",
    "CancelledError": "flame_jupyter.errors",
    "FlameJupyterError": "flame_jupyter.errors",
    "progress": "flame_jupyter.remote",
    "display": "flame_jupyter.remote",
    "panel": "flame_jupyter.status_panel",
}

__all__ = sorted(_LAZY)


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
