"""How an ObjectFuture shows itself: the one "widget or not" decision, and :func:`show`.

``ObjectFuture._repr_mimebundle_`` calls :func:`future_mimebundle`. In a kernel with widget
support (ipykernel + ipywidgets + anywidget) the bundle holds the live widget view *and* static
``text/html`` / ``text/plain`` snapshots, so nbconvert, GitHub, VS Code without widgets and saved
notebooks still show the state, result or error. Terminal IPython and scripts get the snapshots
only. ``FLAME_JUPYTER_WIDGETS=0`` (or :func:`set_widgets`) turns the widgets off (the status
panel, :mod:`flame_jupyter.status_panel`, asks :func:`widgets_enabled` too).

This module sits above both :mod:`flame_jupyter.display` (view models, static renderings) and
:mod:`flame_jupyter.widgets` (which import only ``display``). The view-model names it re-exports
(``future_snapshot``, ``snapshot_html``, ...) are kept for older imports.

Example
-------
>>> from flame_jupyter.views import set_widgets
>>> set_widgets(False)      # plain HTML snapshots, e.g. for a notebook converted to a report
>>> set_widgets(None)       # back to automatic
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from flame_jupyter.display.bundles import (
    HTML_CHARS,
    IMAGE_CHARS,
    PLAIN_CHARS,
    PREVIEW_MIMES,
    RESULT_INFO_MIME,
    SIZE_MIME,
    WIDGET_MIME,
    bundle_html,
    human_size,
    result_info,
    rich_bundle,
    trim_bundle,
)
from flame_jupyter.display.future_static import snapshot_html, snapshot_text
from flame_jupyter.display.future_view import (
    DISPLAYS_KEPT,
    OUTPUT_TAIL_CHARS,
    TRACEBACK_CHARS,
    error_fields,
    output_tail,
)
from flame_jupyter.display.future_view import future_view as future_snapshot
from flame_jupyter.display.protocol import ViewedFuture
from flame_jupyter.display.states import TERMINAL_STATES as TERMINAL

__all__ = [
    "DISPLAYS_KEPT",
    "HTML_CHARS",
    "IMAGE_CHARS",
    "OUTPUT_TAIL_CHARS",
    "PLAIN_CHARS",
    "PREVIEW_MIMES",
    "RESULT_INFO_MIME",
    "SIZE_MIME",
    "TERMINAL",
    "TRACEBACK_CHARS",
    "WIDGET_MIME",
    "bundle_html",
    "error_fields",
    "future_mimebundle",
    "future_snapshot",
    "human_size",
    "output_tail",
    "result_info",
    "rich_bundle",
    "set_widgets",
    "show",
    "snapshot_html",
    "snapshot_text",
    "trim_bundle",
    "widgets_enabled",
]

log = logging.getLogger(__name__)

_override: bool | None = None


# -- when to use widgets -----------------------------------------------------------------------------
def set_widgets(enabled: bool | None) -> None:
    """Force widgets on (True) or off (False); None restores the automatic choice."""
    global _override
    _override = enabled


def widgets_enabled() -> bool:
    """True when futures should render as live widgets: an IPython kernel with ipywidgets + anywidget."""
    if _override is not None:
        return _override
    if os.environ.get("FLAME_JUPYTER_WIDGETS", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # terminal IPython, or a plain script
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def static_bundle(future: ViewedFuture) -> dict[str, Any]:
    """text/plain + text/html of the future's current view."""
    view = future_snapshot(future)
    return {"text/plain": snapshot_text(view), "text/html": snapshot_html(view)}


def future_mimebundle(future: ViewedFuture) -> dict[str, Any]:
    """The display bundle of a future: the live widget where possible, always text/html + text/plain."""
    if widgets_enabled():
        try:
            from flame_jupyter.widgets.future_widget import widget_for

            bundle = widget_for(future)._repr_mimebundle_()
            if future.known_state in TERMINAL:  # the fallbacks a saved notebook keeps: final, now
                bundle.update(static_bundle(future))
            return bundle
        except Exception:  # noqa: BLE001 - a broken widget stack must not hide the future
            log.exception("flame_jupyter: the future widget failed; showing a static view")
    return static_bundle(future)


def show(future: ViewedFuture) -> Any:
    """Display a future so that its *saved* output ends up final as well.

    Like making the future a cell's value (live widget), plus: once the future finished, the
    output's text/html and text/plain are replaced by the final snapshot (``update_display``), so
    a notebook saved without widget state (nbconvert, GitHub, front ends without widgets) shows the
    result or the error, not "running". Returns the IPython ``DisplayHandle``.

    >>> from flame_jupyter.views import show
    >>> show(scorer(3))          # doctest: +SKIP
    """
    from IPython.display import display

    bundle = future_mimebundle(future)
    handle = display(bundle, raw=True, display_id=True)
    if handle is None:
        return None
    if WIDGET_MIME in bundle:
        from flame_jupyter.widgets.future_widget import widget_for

        widget_for(future).on_settled(lambda w: handle.update(w._repr_mimebundle_(), raw=True))
    elif not future.done():

        def finished(f: Any) -> None:
            if f.known_state in TERMINAL:
                f.remove_listener(finished)
                handle.update(static_bundle(f), raw=True)

        future.add_listener(finished)
    return handle
