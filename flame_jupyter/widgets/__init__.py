"""flame_jupyter's widgets: the live view of a future and the status panel.

Both are single anywidget-rendered comm models fed by one throttled update pump
(:mod:`flame_jupyter.widgets.pump`). Users rarely touch them directly: a future shows its widget
when it is a cell's value, and :func:`flame_jupyter.panel` returns the panel.
"""

from __future__ import annotations

from flame_jupyter.widgets.future_widget import FutureWidget, widget_for
from flame_jupyter.widgets.panel_widget import PanelWidget
from flame_jupyter.widgets.pump import Pump, pump

__all__ = ["FutureWidget", "PanelWidget", "Pump", "pump", "widget_for"]
