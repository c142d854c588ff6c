"""The status panel: what this kernel runs on Flame, live, with cancel and close buttons.

Example
-------
>>> import flame_jupyter
>>> flame_jupyter.panel()          # doctest: +SKIP
(one live widget per kernel: sessions and services with task counts per state, throughput,
recent failures -- click one to see its error --, "Cancel tasks" / "Close session" buttons and,
on the embedded runtime, its instances)

Outside a Jupyter kernel (terminal IPython, scripts) ``panel()`` returns a snapshot that prints as
a table: ``print(flame_jupyter.panel())``.

The data and its static renderings live in :mod:`flame_jupyter.display.panel_view` and
:mod:`flame_jupyter.display.panel_static`, the widget in :mod:`flame_jupyter.widgets.panel_widget`;
this module only chooses between them (with :func:`flame_jupyter.views.widgets_enabled`). It is
not part of :mod:`flame_jupyter.views` because the panel reads the registry, which knows futures,
which import ``views``.
"""

from __future__ import annotations

import threading
from typing import Any

from flame_jupyter.display.flame_sessions import connection_mode, flame_status
from flame_jupyter.display.panel_static import PanelSnapshot, status_html, status_text
from flame_jupyter.display.panel_status import kernel_status, merge_status, recent_failures, status
from flame_jupyter.display.states import STATES
from flame_jupyter.views import widgets_enabled

__all__ = [
    "STATES",
    "PanelSnapshot",
    "flame_status",
    "kernel_status",
    "merge_status",
    "panel",
    "recent_failures",
    "status",
    "status_html",
    "status_text",
]

_panel: Any = None
_panel_lock = threading.Lock()


def panel(*, widget: bool | None = None) -> Any:
    """The kernel's status panel (one live widget per kernel; a printable snapshot without widgets).

    ``widget=False`` forces the snapshot, ``True`` the widget.
    """
    global _panel
    use_widget = widgets_enabled() if widget is None else widget
    if not use_widget:
        mode, _ = connection_mode()
        return PanelSnapshot(status(poll_flame=mode is not None))
    from flame_jupyter.widgets.panel_widget import PanelWidget

    with _panel_lock:
        if _panel is None or _panel.comm is None:
            _panel = PanelWidget()
        return _panel
