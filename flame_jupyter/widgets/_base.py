"""The base of flame_jupyter's widgets: one lean comm model each, drawn by anywidget's front end.

Why not ``anywidget.AnyWidget`` itself: its constructor adds traits per instance (a new Python
class per widget) and ``DOMWidget`` opens a second ``Layout`` model per widget. For 2,000 futures
that is 4,000 comm models and ~2.4 s / 24 MB in the kernel; this base opens exactly one model per
widget (~0.3 s / 4 MB for 2,000) and speaks the same AnyModel/AnyView protocol, so anywidget's
JupyterLab / Notebook 7 / VS Code front ends render it unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import anywidget
import ipywidgets
import traitlets as t

from flame_jupyter.display.bundles import WIDGET_MIME
from flame_jupyter.widgets._js import LIB_JS, STUB_ESM

ANYWIDGET_VERSION: str = anywidget.AnyWidget.class_traits()["_model_module_version"].default_value

_lib_lock = threading.Lock()
_lib_carried = False


def _take_lib() -> str:
    """The library code for the first widget of this process, '' for the others."""
    global _lib_carried
    with _lib_lock:
        if _lib_carried:
            return ""
        _lib_carried = True
        return LIB_JS


def _reset_lib_carrier() -> None:
    """Tests: make the next widget carry the library again."""
    global _lib_carried
    with _lib_lock:
        _lib_carried = False


class FlameWidget(ipywidgets.DOMWidget):
    """One comm model rendered by anywidget's AnyView; the view code is shared (see ``_js``)."""

    _model_name = t.Unicode("AnyModel").tag(sync=True)
    _model_module = t.Unicode("anywidget").tag(sync=True)
    _model_module_version = t.Unicode(ANYWIDGET_VERSION).tag(sync=True)
    _view_name = t.Unicode("AnyView").tag(sync=True)
    _view_module = t.Unicode("anywidget").tag(sync=True)
    _view_module_version = t.Unicode(ANYWIDGET_VERSION).tag(sync=True)
    _esm = t.Unicode(STUB_ESM).tag(sync=True)
    _anywidget_id = t.Unicode("flame_jupyter.widgets").tag(sync=True)
    _lib = t.Unicode("").tag(sync=True)
    _kind = t.Unicode("").tag(sync=True)
    # No Layout model (DOMWidget would open one per widget); the view styles itself.
    layout = t.Any(None, allow_none=True).tag(sync=True)

    def __init__(self, *, carry_lib: bool = False, **kwargs: Any) -> None:
        kwargs["_lib"] = LIB_JS if carry_lib else _take_lib()
        super().__init__(**kwargs)
        self.on_msg(self._on_front_end_msg)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._model_id}>"

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "lib":
            self.send({"kind": "lib", "code": LIB_JS})
        elif isinstance(kind, str):
            self.handle_action(kind, content)

    def handle_action(self, kind: str, content: dict[str, Any]) -> None:
        """A button in the view was clicked (runs on the kernel's main thread)."""

    # -- fallbacks ----------------------------------------------------------------------------------
    def text_fallback(self) -> str:
        return repr(self)

    def html_fallback(self) -> str:
        return ""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": self.text_fallback()}
        html = self.html_fallback()
        if html:
            data["text/html"] = html
        if self.comm is not None:
            data[WIDGET_MIME] = {"version_major": 2, "version_minor": 1, "model_id": self._model_id}
        return data
