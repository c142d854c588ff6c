"""``PanelView``: the status panel's data, declared once (this kernel's services and failures, Flame's counts).

:mod:`~flame_jupyter.display.panel_status` gathers it; the static renderings
(:mod:`~flame_jupyter.display.panel_static`) and the panel widget (whose synced traits are made
from :class:`PanelView`'s fields) show exactly these fields.
"""

from __future__ import annotations

from typing import TypedDict


class ServiceRow(TypedDict):
    """One service (or session) of the panel, with its task counts per state."""

    name: str
    kind: str
    app: str
    session_id: str
    closed: bool
    counts: dict[str, int]
    throughput: float
    flame: str  # Flame's own counts for the session, as text
    cancelled_tasks: int  # cancelled calls that were a Flame task of their own (not in a batch)


class Failure(TypedDict):
    """One recent failure of the panel."""

    id: str
    label: str
    service: str
    session_id: str
    task_id: str
    error_type: str
    message: str
    traceback: str
    when: str


class Instance(TypedDict):
    """One instance of the embedded runtime."""

    id: str
    state: str
    session_id: str


class PanelView(TypedDict):
    """What the panel shows (the widget syncs each field as a trait)."""

    runtime: str
    services: list[ServiceRow]
    failures: list[Failure]
    instances: list[Instance]
    show_instances: bool
    totals: dict[str, int]
    live: int
    flame_error: str


PANEL_VIEW_KEYS: tuple[str, ...] = tuple(PanelView.__annotations__)
#: Fields synced (widget state, tools) that the live panel does not draw.
PANEL_FIELDS_NOT_DRAWN: tuple[str, ...] = ("live",)
