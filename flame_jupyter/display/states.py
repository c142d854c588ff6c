"""The five state names of a future, for views: taken from :mod:`flame_jupyter.remote.wire`, never re-spelled.

The widgets' JavaScript and CSS get them from here too (templated once, see
:mod:`flame_jupyter.widgets._js`).
"""

from __future__ import annotations

from flame_jupyter.remote.wire import TERMINAL, State

#: Every state, in the order views list them (queued, running, done, failed, cancelled).
STATES: tuple[str, ...] = tuple(s.value for s in State)
#: The states a future never leaves.
TERMINAL_STATES: tuple[str, ...] = tuple(s.value for s in State if s in TERMINAL)
QUEUED, RUNNING, DONE, FAILED, CANCELLED = (
    State.QUEUED.value,
    State.RUNNING.value,
    State.DONE.value,
    State.FAILED.value,
    State.CANCELLED.value,
)

#: The badge colour of each state in the static HTML (the widgets' CSS uses the theme's colours).
COLORS: dict[str, str] = {
    QUEUED: "#8a8f98",
    RUNNING: "#1976d2",
    DONE: "#388e3c",
    FAILED: "#d32f2f",
    CANCELLED: "#f57c00",
}
