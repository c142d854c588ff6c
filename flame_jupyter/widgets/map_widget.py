"""The live view of a map's group future: counts of N, a progress bar, throughput, ETA, the first
failures with their tracebacks, and Cancel all (one comm model, updated through the pump).

Its synced traits are :class:`~flame_jupyter.display.map_view.MapView`'s fields. Once the map
has finished and its final counts were sent, the widget stops listening (nothing more to pay).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import traitlets as t

from flame_jupyter.display.map_view import MAP_VIEW_KEYS, MapView, ViewedMap, map_html, map_text, map_view
from flame_jupyter.widgets._base import FlameWidget
from flame_jupyter.widgets._traits import with_view_traits
from flame_jupyter.widgets.pump import Pump, pump

MAP_KEYS = MAP_VIEW_KEYS  # the synced fields: MapView's, in its order
REFRESH = 0.5  # seconds between updates while running (throughput and ETA move)


class MapWidget(with_view_traits(FlameWidget, MapView, {"total": -1})):  # type: ignore[misc]
    """Live view of a :class:`~flame_jupyter.maps.MapFuture`."""

    _kind = t.Unicode("map").tag(sync=True)

    def __init__(self, group: ViewedMap, *, pump: Pump | None = None) -> None:
        self._pump = pump or _default_pump()
        self._group: ViewedMap | None = group
        super().__init__(**map_view(group))
        group.add_listener(self._on_group)  # type: ignore[attr-defined]
        self._pump.request(self, urgent=True)

    @property
    def watching(self) -> bool:
        return self._group is not None

    def _on_group(self, _group: Any) -> None:
        self._pump.request(self)

    def flush(self) -> None:
        group = self._group
        if group is None or self.comm is None:
            return
        view = map_view(group)
        with self.hold_sync():
            for key in MAP_KEYS:
                setattr(self, key, view[key])  # type: ignore[literal-required]
        if view["finished"]:
            group.remove_listener(self._on_group)  # type: ignore[attr-defined]
            self._group = None
            self._pump.forget(self)
        else:
            self._pump.request(self, delay=REFRESH)

    def handle_action(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "cancel" and self._group is not None:
            self._group.cancel()
            self._pump.request(self, urgent=True)

    def snapshot(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in MAP_KEYS}

    def text_fallback(self) -> str:
        return map_text(self.snapshot())

    def html_fallback(self) -> str:
        return map_html(self.snapshot())


def _default_pump() -> Pump:
    return pump()


_widgets: weakref.WeakKeyDictionary[Any, MapWidget] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def map_widget_for(group: ViewedMap) -> MapWidget:
    """The (one) widget of a group; shown twice: two views of one model."""
    with _lock:
        widget = _widgets.get(group)
        if widget is None or widget.comm is None:
            widget = MapWidget(group)
            _widgets[group] = widget
        return widget
