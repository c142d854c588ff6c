"""How a map's group future shows itself: the live group widget where possible, else static text/html.

As :mod:`flame_jupyter.views` does for one future (and asking it whether widgets are on), the
bundle always carries text/plain and text/html, so saved notebooks show the counts.
"""

from __future__ import annotations

import logging
from typing import Any

from flame_jupyter.display.map_view import ViewedMap, map_html, map_text, map_view
from flame_jupyter.views import widgets_enabled

log = logging.getLogger(__name__)


def static_map_bundle(group: ViewedMap) -> dict[str, Any]:
    """text/plain + text/html of the group's current view."""
    view = map_view(group)
    return {"text/plain": map_text(view), "text/html": map_html(view)}


def map_mimebundle(group: ViewedMap) -> dict[str, Any]:
    """The display bundle of a group: its live widget, always with text/plain + text/html."""
    if widgets_enabled():
        try:
            from flame_jupyter.widgets.map_widget import map_widget_for

            return map_widget_for(group)._repr_mimebundle_()
        except Exception:  # noqa: BLE001 - a broken widget stack must not hide the group
            log.exception("flame_jupyter: the map widget failed; showing a static view")
    return static_map_bundle(group)


def show_map(group: Any) -> Any:
    """Display the group so that its *saved* output ends final too: once the map finished, the
    output's text/plain and text/html are replaced by the final counts (``update_display``)."""
    from IPython.display import display

    handle = display(map_mimebundle(group), raw=True, display_id=True)
    if handle is None:
        return None

    def finished(g: Any) -> None:
        if g.done():
            g.remove_listener(finished)
            handle.update({**map_mimebundle(g), **static_map_bundle(g)}, raw=True)

    group.add_listener(finished)
    return handle
