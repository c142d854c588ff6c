"""``MapView``: what a map's group view shows, declared once; its text/plain and text/html renderings.

The live widget (:class:`~flame_jupyter.widgets.map_widget.MapWidget`, whose synced traits are
made from :class:`MapView`'s fields) and the static renderings show exactly these fields; the
widget's JavaScript reads them by the names templated from :data:`MAP_VIEW_KEYS`. A map is read
only through :class:`ViewedMap` (public members of :class:`~flame_jupyter.maps.MapFuture`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any, Protocol, TypedDict

from flame_jupyter.display.future_view import error_fields
from flame_jupyter.display.states import COLORS, DONE, FAILED, RUNNING

FAILURES_SHOWN = 5
FAILURE_TRACEBACK_CHARS = 6_000


class ViewedMap(Protocol):
    """The reads (and the one action, cancel) the display makes on a map's group future."""

    label: str
    service: str
    session_id: str

    @property
    def counts(self) -> dict[str, Any]: ...

    @property
    def throughput(self) -> float: ...

    @property
    def eta(self) -> float | None: ...

    @property
    def elapsed(self) -> float: ...

    @property
    def failures(self) -> list[tuple[int, BaseException]]: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


class MapFailure(TypedDict):
    """One of the first failed items."""

    index: int
    error_type: str
    message: str
    traceback: str


class MapView(TypedDict):
    """The JSON-ready state of a map's view (the widget syncs each field as a trait)."""

    label: str
    service: str
    session_id: str
    total: int  # -1: not known yet (a generator input not exhausted)
    done: int
    failed: int
    cancelled: int
    running: int
    queued: int
    finished: bool
    throughput: float  # items per second
    eta: float | None  # seconds left
    elapsed: float
    failures: list[MapFailure]


MAP_VIEW_KEYS: tuple[str, ...] = tuple(MapView.__annotations__)
#: Fields synced (widget state, saved notebooks) that the live view does not draw.
MAP_FIELDS_NOT_DRAWN: tuple[str, ...] = ("session_id",)


def map_view(group: ViewedMap) -> MapView:
    """Everything the group's view shows, read once (JSON-ready; never blocks)."""
    c = group.counts
    failures: list[MapFailure] = []
    for index, err in group.failures[:FAILURES_SHOWN]:
        etype, message, tb = error_fields(err)
        if len(tb) > FAILURE_TRACEBACK_CHARS:
            tb = "…\n" + tb[-FAILURE_TRACEBACK_CHARS:]
        failures.append({"index": int(index), "error_type": etype, "message": message, "traceback": tb})
    eta = group.eta
    return {
        "label": str(group.label or ""),
        "service": str(group.service or ""),
        "session_id": str(group.session_id or ""),
        "total": -1 if c["total"] is None else int(c["total"]),
        "done": int(c["done"]),
        "failed": int(c["failed"]),
        "cancelled": int(c["cancelled"]),
        "running": int(c["running"]),
        "queued": int(c["queued"]),
        "finished": bool(group.done()),
        "throughput": round(float(group.throughput), 3),
        "eta": None if eta is None else round(float(eta), 1),
        "elapsed": round(float(group.elapsed), 3),
        "failures": failures,
    }


def _of(view: Mapping[str, Any]) -> str:
    return "?" if view["total"] < 0 else str(view["total"])


def map_text(view: Mapping[str, Any]) -> str:
    """The group as plain text: counts of N, throughput, ETA, the first failures."""
    head = (
        f"{view['label']}: {view['done']} done, {view['failed']} failed, {view['running']} running, "
        f"{view['queued']} queued"
        + (f", {view['cancelled']} cancelled" if view["cancelled"] else "")
        + f" of {_of(view)}"
    )
    rate = f"{view['throughput']:.1f} items/s, {view['elapsed']:.1f} s"
    if not view["finished"] and view["eta"] is not None:
        rate += f", ETA {view['eta']:.0f} s"
    lines = [head, ("finished · " if view["finished"] else "") + rate]
    for f in view["failures"]:
        lines.append(f"  item {f['index']}: {f['error_type']}: {f['message']}")
    return "\n".join(lines)


def map_html(view: Mapping[str, Any]) -> str:
    """The group as HTML (nbconvert, GitHub, front ends without widgets; saved notebooks)."""
    e = html.escape
    total = view["total"]
    finished = view["done"] + view["failed"] + view["cancelled"]
    pct = 0.0 if total <= 0 else min(100.0, 100.0 * finished / total)
    colour = COLORS[FAILED] if view["failed"] else COLORS[DONE] if view["finished"] else COLORS[RUNNING]
    counts = " · ".join(
        f"{name} <b>{view[name]}</b>" for name in ("done", "failed", "running", "queued", "cancelled")
    )
    parts = [
        f'<div class="flame-map"><div><b>{e(view["label"])}</b> {counts} of <b>{_of(view)}</b></div>',
        '<div style="background:#e0e0e0;height:6px;width:100%;max-width:480px">',
        f'<div style="background:{colour};height:6px;width:{pct:.1f}%"></div></div>',
        f"<small>{'finished · ' if view['finished'] else ''}{view['throughput']:.1f} items/s · "
        f"{view['elapsed']:.1f} s"
        + (f" · ETA {view['eta']:.0f} s" if not view["finished"] and view["eta"] is not None else "")
        + "</small>",
    ]
    for f in view["failures"]:
        parts.append(
            f"<details><summary>item {f['index']}: <b>{e(f['error_type'])}</b>: {e(f['message'])}</summary>"
            f"<pre>{e(f['traceback'])}</pre></details>"
        )
    parts.append("</div>")
    return "".join(parts)
