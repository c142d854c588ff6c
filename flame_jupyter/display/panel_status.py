"""The status panel's data, gathered: this kernel's registry, and Flame's view folded in.

Produces the fields of :class:`~flame_jupyter.display.panel_view.PanelView` (plus the total
throughput); reads futures only through :class:`~flame_jupyter.display.protocol.ViewedFuture`.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from flame_jupyter.display.flame_sessions import connection_mode, flame_status
from flame_jupyter.display.future_view import error_fields
from flame_jupyter.display.panel_view import Failure, ServiceRow
from flame_jupyter.display.protocol import ViewedFuture
from flame_jupyter.display.states import CANCELLED, DONE, FAILED, QUEUED, RUNNING, STATES
from flame_jupyter.map_state import recent_maps
from flame_jupyter.registry import CANCELLED_TASKS, Registry, registry

FAILURES_SHOWN = 10
FAILURE_TRACEBACK_CHARS = 8_000
#: A closed service stays listed (marked closed) this long after the panel first saw it closed.
CLOSED_SHOWN_SECONDS = 10.0
_closed_seen: dict[str, float] = {}  # session id -> when the panel first saw it closed (monotonic)


def _hidden_closed(session_id: str, closed: bool) -> bool:
    """A service closed more than :data:`CLOSED_SHOWN_SECONDS` ago is no longer listed."""
    if not closed:
        _closed_seen.pop(session_id, None)
        return False
    first = _closed_seen.setdefault(session_id, time.monotonic())
    return time.monotonic() - first > CLOSED_SHOWN_SECONDS


# -- what the kernel knows --------------------------------------------------------------------------
def kernel_status(reg: Registry | None = None) -> dict[str, Any]:
    """Services with task counts per state and throughput, recent failures, totals (never blocks)."""
    reg = reg or registry
    services: list[ServiceRow] = []
    known: set[str] = set()
    for info in list(reg.services.values()):
        known.add(info.session_id)
        if _hidden_closed(info.session_id, bool(info.closed)):
            continue
        counts = {s: max(0, int(info.counts.get(s, 0))) for s in STATES}
        services.append(
            {
                "name": info.name,
                "kind": info.kind,
                "app": info.app,
                "session_id": info.session_id,
                "closed": bool(info.closed),
                "counts": counts,
                "throughput": round(info.throughput(), 3),
                "flame": "",
                "cancelled_tasks": max(0, int(info.counts.get(CANCELLED_TASKS, 0))),
            }
        )
    live = reg.live_futures()
    recent = reg.recent_futures()
    other: collections.Counter[str] = collections.Counter()
    for f in live + recent:
        if f.session_id not in known:
            other[f.known_state] += 1
    if other:
        services.append(
            {
                "name": "(other calls)",
                "kind": "recent",
                "app": "",
                "session_id": "",
                "closed": False,
                "counts": {s: other.get(s, 0) for s in STATES},
                "throughput": 0.0,
                "flame": "",
                "cancelled_tasks": 0,
            }
        )
    services.extend(map_rows())
    totals = {s: sum(row["counts"][s] for row in services if row["kind"] != "map") for s in STATES}
    return {
        "services": services,
        "failures": recent_failures(reg),
        "totals": totals,
        "live": len(live),
        "throughput": round(sum(row["throughput"] for row in services), 3),
    }


def map_rows() -> list[ServiceRow]:
    """One row per map of this process (items, not tasks: its chunks count in the service's row)."""
    rows: list[ServiceRow] = []
    for m in recent_maps():
        c = m.counts()
        rows.append(
            {
                "name": m.label,
                "kind": "map",
                "app": "",
                "session_id": m.session_id,
                "closed": False,
                "counts": {
                    QUEUED: c["queued"],
                    RUNNING: c["running"],
                    DONE: c["done"],
                    FAILED: c["failed"],
                    CANCELLED: c["cancelled"],
                },
                "throughput": round(m.throughput(), 3),
                "flame": f"{c['done'] + c['failed'] + c['cancelled']} of {'?' if c['total'] is None else c['total']} items",
                "cancelled_tasks": 0,
            }
        )
    return rows


def recent_failures(reg: Registry | None = None, limit: int = FAILURES_SHOWN) -> list[Failure]:
    """The latest failed futures, newest first, with their error type, message and traceback."""
    reg = reg or registry
    seen: dict[int, ViewedFuture] = {}
    for info in list(reg.services.values()):
        for ref in list(info.recent_failures):
            f = ref() if callable(ref) else ref
            if f is not None:
                seen[id(f)] = f
    for f in reg.recent_futures():
        if f.known_state == FAILED:
            seen[id(f)] = f
    futures = sorted(seen.values(), key=lambda f: f.finished_at or 0, reverse=True)[:limit]
    out: list[Failure] = []
    for f in futures:
        etype, message, tb = error_fields(f.error) if f.error is not None else ("Error", "", "")
        if len(tb) > FAILURE_TRACEBACK_CHARS:
            tb = "…\n" + tb[-FAILURE_TRACEBACK_CHARS:]
        out.append(
            {
                "id": f"{f.session_id}/{f.task_id}/{id(f)}",
                "label": str(f.label or ""),
                "service": str(f.service or ""),
                "session_id": str(f.session_id or ""),
                "task_id": "" if f.task_id is None else str(f.task_id),
                "error_type": etype,
                "message": message,
                "traceback": tb,
                "when": time.strftime("%H:%M:%S", time.localtime(f.finished_at)) if f.finished_at else "",
            }
        )
    return out


# -- both together --------------------------------------------------------------------------------------
def merge_status(kernel: dict[str, Any], flame: dict[str, Any] | None) -> dict[str, Any]:
    """The kernel's view with Flame's per-session counts and instances folded in (a ``PanelView`` + throughput)."""
    merged = dict(kernel)
    merged["services"] = [dict(row) for row in kernel["services"]]
    flame = flame or {}
    sessions: dict[str, Any] = flame.get("sessions", {})
    rows = {row["session_id"]: row for row in merged["services"] if row["session_id"]}
    for row in merged["services"]:
        s = sessions.get(row["session_id"])
        if s is not None:
            line = flame_line(s, row["counts"], cancelled_tasks=row.get("cancelled_tasks"))
            row["flame"] = line + (" · closed" if s["state"] == "closed" else "")
            if s["state"] == "closed":
                row["closed"] = True
    if flame.get("embedded"):  # the embedded runtime is this kernel's own: show its other open sessions
        for sid, s in sessions.items():
            if sid in rows or s["state"] == "closed":
                continue
            merged["services"].append(
                {
                    "name": "(session)",
                    "kind": s["app"],
                    "app": s["app"],
                    "session_id": sid,
                    "closed": False,
                    "counts": {
                        QUEUED: s["pending"],
                        RUNNING: s["running"],
                        DONE: s["succeed"],
                        FAILED: s["failed"],
                        CANCELLED: 0,
                    },
                    "throughput": 0.0,
                    "flame": "not started from this kernel's registry",
                }
            )
    merged["runtime"] = flame.get("runtime") or connection_mode()[1]
    merged["instances"] = flame.get("instances", [])
    merged["show_instances"] = bool(flame.get("show_instances"))
    merged["flame_error"] = flame.get("flame_error", "")
    return merged


def flame_line(session: dict[str, Any], counts: dict[str, int], cancelled_tasks: int | None = None) -> str:
    """Flame's task counts for a session, in the terms of the row's columns.

    Flame v0.6.0 cannot cancel one task: a cancelled call stops itself and its task ends
    ``Failed`` on Flame. Those tasks are said as the row's cancelled calls, not as failures.
    ``cancelled_tasks``: how many cancelled calls were a task of their own (a call cancelled
    inside a batch, :mod:`flame_jupyter.pipes`, fails no task); default: all of them. Closing a
    session turns its pending tasks ``Cancelled``, which flamepy does not count: nothing is ending.
    """
    closed = session.get("state") == "closed"
    cancelled = max(0, int(counts.get(CANCELLED, 0)))
    own = cancelled if cancelled_tasks is None else min(cancelled, max(0, int(cancelled_tasks)))
    as_failed = min(own, int(session["failed"]))
    text = (
        f"{session['pending']} pending · {session['running']} running · {session['succeed']} ok · "
        f"{session['failed'] - as_failed} failed"
    )
    if cancelled:
        text += f" · {cancelled} cancelled"
        if as_failed < own and not closed:
            text += f" ({own - as_failed} still ending)"
    return text


def status(poll_flame: bool = True) -> dict[str, Any]:
    """The panel's data: :func:`kernel_status`, plus Flame's view when ``poll_flame`` (blocking)."""
    kernel = kernel_status()
    flame = (
        flame_status([row["session_id"] for row in kernel["services"] if row["session_id"]])
        if poll_flame
        else None
    )
    return merge_status(kernel, flame)
