"""Notebook libraries on an executor: matplotlib, tqdm and ``IPython.display`` report to the call.

`install_library_hooks` (at the start of every call with a channel) adds an import hook; nothing is
imported here. Each library is adapted when the user's code imports it, or at once if it is loaded:

- matplotlib: the backend becomes :data:`BACKEND` (Agg drawing); ``plt.show()`` sends every open
  figure as a PNG display record and closes it; :func:`end_call` does the same for figures left
  open at the end of a call (as ``matplotlib_inline`` does after a cell), except figures that are
  the call's result, which are closed unsent (so they arrive unregistered with pyplot and render
  once, as the result);
- tqdm: every bar refresh also sends a progress record (``tqdm``, ``tqdm.auto``, ``trange``,
  ``tqdm.pandas``); ``tqdm.notebook`` is the text bar (there is no browser on an executor);
- IPython: ``display()`` (``IPython.display.display``) sends its objects' rich bundles.

Records go to the current call (``runtime._rt().channel``); without one, the libraries behave as
they would anyway (``display`` prints, ``show`` keeps the figures).
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.util
import io
import sys
import time
from collections.abc import Callable
from typing import Any

from .reprs import mime_bundle
from .runtime import _rt
from .wire import Display, Progress

BACKEND_MODULE = f"{__package__}.mpl_backend"
BACKEND = f"module://{BACKEND_MODULE}"
_WALK_LIMIT = 1_000  # objects looked at when finding the figures of a result


def _lib(name: str) -> Any:
    """A module of a library the user's code already imported (never a dependency of this package:
    only called from the hooks of that library)."""
    return sys.modules.get(name) or importlib.import_module(name)


def _channel() -> Any:
    return getattr(_rt(), "channel", None)


# -- rich bundles ------------------------------------------------------------------------------------
def _is_figure(obj: Any) -> bool:
    return type(obj).__module__ == "matplotlib.figure" and hasattr(obj, "savefig")


def figure_bundle(fig: Any) -> dict[str, Any]:
    """A figure as IPython's inline backend shows it: PNG (tight bounding box) and its repr."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": repr(fig)}


def bundle_of(obj: Any) -> dict[str, Any]:
    """The rich bundle of ``obj`` as Jupyter would show it (figures, ``_repr_mimebundle_``, ``_repr_*_``)."""
    if _is_figure(obj):
        try:
            return figure_bundle(obj)
        except Exception:  # noqa: BLE001 - a figure that cannot draw still has a repr
            pass
    fn = getattr(obj, "_repr_mimebundle_", None)
    if fn is not None and not isinstance(obj, type):
        try:
            data = fn()
            if isinstance(data, tuple):
                data = data[0]
            if isinstance(data, dict) and data:
                out = {k: v for k, v in data.items() if isinstance(v, (str, dict, list))}
                out.update(
                    {k: base64.b64encode(v).decode("ascii") for k, v in data.items() if isinstance(v, bytes)}
                )
                out.setdefault("text/plain", mime_bundle(obj)["text/plain"])
                return out
        except Exception:  # noqa: BLE001 - fall back to the _repr_*_ methods
            pass
    return mime_bundle(obj)


def send_display(obj: Any, raw: bool = False) -> bool:
    """Send ``obj`` as a display record of the current call; False when there is no call."""
    ch = _channel()
    if ch is None:
        return False
    bundle = dict(obj) if raw and isinstance(obj, dict) else bundle_of(obj)
    ch.add(Display("display", bundle))
    return True


# -- IPython.display ---------------------------------------------------------------------------------
class _Handle:
    """What ``display(..., display_id=True)`` returns remotely: updates are new displays."""

    def display(self, obj: Any, **kwargs: Any) -> None:
        send_display(obj, raw=bool(kwargs.get("raw")))

    update = display


def _make_display(original: Callable[..., Any]) -> Callable[..., Any]:
    def display(*objs: Any, raw: bool = False, display_id: Any = None, **kwargs: Any) -> Any:
        if _channel() is None:
            return original(*objs, raw=raw, display_id=display_id, **kwargs)
        for obj in objs:
            send_display(obj, raw=raw)
        return _Handle() if display_id else None

    display._flame_display = True  # type: ignore[attr-defined]
    display.__doc__ = original.__doc__
    return display


def _patch_ipython(_mod: Any = None) -> None:
    core = sys.modules.get("IPython.core.display_functions")
    original = getattr(core, "display", None)
    if original is None or getattr(original, "_flame_display", False):
        return
    patched = _make_display(original)
    for name in ("IPython.core.display_functions", "IPython.display", "IPython.core.display", "IPython"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "display", None) is original:
            mod.display = patched


# -- tqdm --------------------------------------------------------------------------------------------
def _patch_tqdm_std(mod: Any) -> None:
    cls = getattr(mod, "tqdm", None)
    if cls is None or getattr(cls, "_flame_progress", False):
        return
    original = cls.display

    def display(self: Any, msg: Any = None, pos: Any = None) -> Any:
        shown = original(self, msg, pos)
        ch = _channel()
        if ch is not None and not getattr(self, "disable", False):
            total = getattr(self, "total", None)
            ch.add(
                Progress(
                    "progress",
                    float(getattr(self, "n", 0) or 0),
                    float(total) if total else None,
                    str(getattr(self, "desc", "") or "").rstrip(": "),
                    time.time(),
                )
            )
        return shown

    cls.display = display
    cls._flame_progress = True


def _patch_tqdm_notebook(mod: Any) -> None:
    std = _lib("tqdm.std")
    _patch_tqdm_std(std)
    for name in ("tqdm", "tqdm_notebook"):
        setattr(mod, name, std.tqdm)
    for name in ("trange", "tnrange"):
        setattr(mod, name, std.trange)


# -- matplotlib --------------------------------------------------------------------------------------
def _use_backend(mpl: Any) -> None:
    """Make :data:`BACKEND` matplotlib's backend (the kernel's inline one does not work here)."""
    if mpl.rcParams._get("backend") == BACKEND:  # _get: reading "backend" would pick one
        return
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].switch_backend(BACKEND)
    else:
        mpl.rcParams["backend"] = BACKEND
    mpl.rcParamsOrig["backend"] = BACKEND


def _show(*args: Any, **kwargs: Any) -> None:
    """``plt.show()`` on an executor: each open figure is sent as a PNG display, then closed."""
    managers = list(_lib("matplotlib._pylab_helpers").Gcf.get_all_fig_managers())
    if _channel() is None:
        return
    for manager in managers:
        send_display(manager.canvas.figure)
    if managers:
        sys.modules["matplotlib.pyplot"].close("all")


def _build_backend(module: Any) -> None:
    module.FigureCanvas = _lib("matplotlib.backends.backend_agg").FigureCanvasAgg
    module.FigureManager = _lib("matplotlib.backend_bases").FigureManagerBase
    module.show = _show


def _figures_in(value: Any) -> list[Any]:
    """Figures that are ``value`` or inside it (lists, tuples, dicts, a cell's ``{"value", "outputs"}``)."""
    found: list[Any] = []
    stack, seen = [value], 0
    while stack and seen < _WALK_LIMIT:
        obj = stack.pop()
        seen += 1
        if _is_figure(obj):
            found.append(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return found


def end_call(result: Any = None) -> None:
    """At the end of a call: send open pyplot figures (not the result's) and close them all."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or plt.get_backend() != BACKEND:
        return
    managers = list(_lib("matplotlib._pylab_helpers").Gcf.get_all_fig_managers())
    if not managers:
        return
    keep = {id(f) for f in _figures_in(result)}
    for manager in managers:
        if id(manager.canvas.figure) not in keep:
            send_display(manager.canvas.figure)
    plt.close("all")  # result figures too: they travel unregistered with pyplot


# -- the import hook ---------------------------------------------------------------------------------
_PATCHES: dict[str, Callable[[Any], None]] = {
    "matplotlib": _use_backend,
    "tqdm.std": _patch_tqdm_std,
    "tqdm.notebook": _patch_tqdm_notebook,
    "IPython.core.display_functions": _patch_ipython,
    "IPython.display": _patch_ipython,
}


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then adapts the module (other attributes go to the real loader)."""

    def __init__(self, loader: Any, patch: Callable[[Any], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except Exception:  # noqa: BLE001 - an adaptation never breaks the user's import
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _BackendLoader(importlib.abc.Loader):
    def create_module(self, spec: Any) -> Any:
        return None

    def exec_module(self, module: Any) -> None:
        _build_backend(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == BACKEND_MODULE:
            return importlib.util.spec_from_loader(name, _BackendLoader())
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "_flame_finder", False):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


_Finder._flame_finder = True  # type: ignore[attr-defined]


def install_library_hooks() -> None:
    """Adapt the libraries already loaded, and hook the import of the others (once per process)."""
    if "ipykernel.kernelapp" in sys.modules:
        return  # running inside a notebook kernel: its own display machinery is the real one
    rt = _rt()
    if not getattr(rt, "libs_hooked", False):
        with rt.lock:
            if not getattr(rt, "libs_hooked", False):
                sys.meta_path.insert(0, _Finder())
                rt.libs_hooked = True
    for name, patch in _PATCHES.items():
        mod = sys.modules.get(name)
        if mod is not None:
            try:
                patch(mod)
            except Exception:  # noqa: BLE001 - never fail a call for a library's display
                pass
