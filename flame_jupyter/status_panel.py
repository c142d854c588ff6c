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
"""

from __future__ import annotations

import collections
import html
import ipaddress
import os
import threading
import time
from typing import Any
from urllib.parse import urlparse

from flame_jupyter.registry import Registry, registry
from flame_jupyter.views import error_fields, widgets_enabled

STATES = ("queued", "running", "done", "failed", "cancelled")
FAILURES_SHOWN = 10
FAILURE_TRACEBACK_CHARS = 8_000
CLUSTER_SESSIONS_POLLED = 20  # on a cluster, only this kernel's sessions are asked about


# -- what the kernel knows --------------------------------------------------------------------------
def kernel_status(reg: Registry | None = None) -> dict[str, Any]:
    """Services with task counts per state and throughput, recent failures, totals (never blocks)."""
    reg = reg or registry
    services: list[dict[str, Any]] = []
    known: set[str] = set()
    for info in list(reg.services.values()):
        known.add(info.session_id)
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
            }
        )
    totals = {s: sum(row["counts"][s] for row in services) for s in STATES}
    return {
        "services": services,
        "failures": recent_failures(reg),
        "totals": totals,
        "live": len(live),
        "throughput": round(sum(row["throughput"] for row in services), 3),
    }


def recent_failures(reg: Registry | None = None, limit: int = FAILURES_SHOWN) -> list[dict[str, Any]]:
    """The latest failed futures, newest first, with their error type, message and traceback."""
    reg = reg or registry
    seen: dict[int, Any] = {}
    for info in list(reg.services.values()):
        for ref in list(info.recent_failures):
            f = ref() if callable(ref) else ref
            if f is not None:
                seen[id(f)] = f
    for f in reg.recent_futures():
        if f.known_state == "failed":
            seen[id(f)] = f
    futures = sorted(seen.values(), key=lambda f: f.finished_at or 0, reverse=True)[:limit]
    out = []
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


# -- what Flame knows ---------------------------------------------------------------------------------
def _connection_mode() -> tuple[str | None, str]:
    """('embedded' | 'cluster' | 'unknown' | None, description)."""
    try:
        from flame_jupyter import connection

        conn = connection.current()
    except Exception:  # noqa: BLE001 - connection module unavailable: use the environment
        conn = None
    if conn is not None:
        return conn.mode, str(conn)
    endpoint = os.environ.get("FLAME_ENDPOINT", "")
    if endpoint:
        return "unknown", f"Flame at {endpoint}"
    return None, "not connected to Flame"


def _is_loopback(endpoint: str) -> bool:
    host = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flame_status(session_ids: list[str]) -> dict[str, Any]:
    """Sessions (and, on the embedded runtime, instances) as Flame reports them (blocking gRPC)."""
    mode, runtime = _connection_mode()
    status: dict[str, Any] = {
        "runtime": runtime,
        "sessions": {},
        "instances": [],
        "show_instances": False,
        "flame_error": "",
    }
    if mode is None:
        return status
    import flamepy

    try:
        if mode == "cluster":
            sessions = []
            for sid in session_ids[:CLUSTER_SESSIONS_POLLED]:
                try:
                    sessions.append(flamepy.get_session(sid))
                except Exception:  # noqa: BLE001 - a session gone from the cluster
                    continue
        else:
            sessions = list(flamepy.list_sessions())
        for s in sessions:
            state = getattr(s.state, "name", str(s.state)).lower()
            status["sessions"][s.id] = {
                "state": state,
                "app": s.application,
                "pending": s.pending,
                "running": s.running,
                "succeed": s.succeed,
                "failed": s.failed,
            }
        embedded = mode == "embedded" or (
            mode == "unknown" and _is_loopback(os.environ.get("FLAME_ENDPOINT", ""))
        )
        if embedded:
            status["show_instances"] = True
            status["instances"] = [_instance(e) for e in flamepy.list_executors()]
    except Exception as e:  # noqa: BLE001 - show the problem in the panel, keep the kernel's view
        status["flame_error"] = f"Flame did not answer: {type(e).__name__}: {e}"
    status["embedded"] = mode == "embedded" or status["show_instances"]
    return status


def _instance(executor: Any) -> dict[str, str]:
    from flamepy.proto import types_pb2

    try:
        state = types_pb2.ExecutorState.Name(executor.status.state)
    except ValueError:
        state = str(executor.status.state)
    state = state.removeprefix("Executor").lower()
    return {"id": executor.metadata.id, "state": state, "session_id": executor.status.session_id}


def merge_status(kernel: dict[str, Any], flame: dict[str, Any] | None) -> dict[str, Any]:
    """The kernel's view with Flame's per-session counts and instances folded in."""
    merged = dict(kernel)
    merged["services"] = [dict(row) for row in kernel["services"]]
    flame = flame or {}
    sessions: dict[str, Any] = flame.get("sessions", {})
    rows = {row["session_id"]: row for row in merged["services"] if row["session_id"]}
    for row in merged["services"]:
        s = sessions.get(row["session_id"])
        if s is not None:
            row["flame"] = (
                f"{s['pending']} pending · {s['running']} running · {s['succeed']} ok · "
                f"{s['failed']} failed" + (" · closed" if s["state"] == "closed" else "")
            )
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
                        "queued": s["pending"],
                        "running": s["running"],
                        "done": s["succeed"],
                        "failed": s["failed"],
                        "cancelled": 0,
                    },
                    "throughput": 0.0,
                    "flame": "not started from this kernel's registry",
                }
            )
    merged["runtime"] = flame.get("runtime") or _connection_mode()[1]
    merged["instances"] = flame.get("instances", [])
    merged["show_instances"] = bool(flame.get("show_instances"))
    merged["flame_error"] = flame.get("flame_error", "")
    return merged


def status(poll_flame: bool = True) -> dict[str, Any]:
    """The panel's data: :func:`kernel_status`, plus Flame's view when ``poll_flame`` (blocking)."""
    kernel = kernel_status()
    flame = (
        flame_status([row["session_id"] for row in kernel["services"] if row["session_id"]])
        if poll_flame
        else None
    )
    return merge_status(kernel, flame)


# -- renderings ---------------------------------------------------------------------------------------
def status_text(st: dict[str, Any]) -> str:
    """A plain-text table of the panel's data."""
    lines = [f"Flame: {st.get('runtime') or ''}".rstrip()]
    totals = st.get("totals", {})
    lines.append("  ".join(f"{s} {totals.get(s, 0)}" for s in STATES))
    if st.get("flame_error"):
        lines.append(st["flame_error"])
    services = st.get("services", [])
    if services:
        header = f"{'service':<20} {'session':<22} " + " ".join(f"{s:>9}" for s in STATES) + "  throughput"
        lines.append(header)
        for row in services:
            sid = row["session_id"] + (" (closed)" if row.get("closed") else "")
            counts = " ".join(f"{row['counts'][s]:>9}" for s in STATES)
            lines.append(f"{row['name'][:20]:<20} {sid[:22]:<22} {counts}  {row['throughput']:.2f}/s")
    else:
        lines.append("Nothing has run on Flame from this kernel yet.")
    failures = st.get("failures", [])
    if failures:
        lines.append("Recent failures:")
        for f in failures:
            lines.append(f"  {f['when']} {f['label'] or f['service']}: {f['error_type']}: {f['message']}")
    if st.get("show_instances"):
        lines.append("Embedded runtime instances:")
        for i in st.get("instances", []) or [{"id": "(none)", "state": "", "session_id": ""}]:
            lines.append(f"  {i['id']:<24} {i['state']:<10} {i['session_id']}")
    return "\n".join(lines)


def status_html(st: dict[str, Any]) -> str:
    """An HTML table of the panel's data (nbconvert, GitHub, front ends without widgets)."""
    e = html.escape
    totals = st.get("totals", {})
    parts = [
        '<div class="flame-panel">',
        f"<div><b>Flame</b> <small>{e(st.get('runtime') or '')}</small> ",
        " ".join(f"{e(s)} <b>{totals.get(s, 0)}</b>" for s in STATES),
        "</div>",
    ]
    if st.get("flame_error"):
        parts.append(f"<div><small>{e(st['flame_error'])}</small></div>")
    services = st.get("services", [])
    if services:
        parts.append("<table><tr><th>service</th><th>session</th>")
        parts.extend(f"<th>{s}</th>" for s in STATES)
        parts.append("<th>throughput</th></tr>")
        for row in services:
            parts.append(
                f"<tr><td>{e(row['name'])}</td><td>{e(row['session_id'])}{' (closed)' if row.get('closed') else ''}</td>"
            )
            parts.extend(f'<td style="text-align:right">{row["counts"][s]}</td>' for s in STATES)
            parts.append(f"<td>{row['throughput']:.2f}/s</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<div>Nothing has run on Flame from this kernel yet.</div>")
    failures = st.get("failures", [])
    if failures:
        parts.append("<div><b>Recent failures</b></div>")
        for f in failures:
            parts.append(
                f"<details><summary>{e(f['when'])} {e(f['label'] or f['service'])}: "
                f"<b>{e(f['error_type'])}</b>: {e(f['message'])}</summary><pre>{e(f['traceback'])}</pre></details>"
            )
    if st.get("show_instances"):
        parts.append("<div><b>Embedded runtime instances</b></div><table>")
        for i in st.get("instances", []):
            parts.append(
                f"<tr><td>{e(i['id'])}</td><td>{e(i['state'])}</td><td>{e(i['session_id'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


class PanelSnapshot:
    """The panel's data at one moment, for places without widgets (prints as a table)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return status_text(self.data)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": status_text(self.data), "text/html": status_html(self.data)}


_panel: Any = None
_panel_lock = threading.Lock()


def panel(*, widget: bool | None = None) -> Any:
    """The kernel's status panel (one live widget per kernel; a printable snapshot without widgets).

    ``widget=False`` forces the snapshot, ``True`` the widget.
    """
    global _panel
    use_widget = widgets_enabled() if widget is None else widget
    if not use_widget:
        mode, _ = _connection_mode()
        return PanelSnapshot(status(poll_flame=mode is not None))
    from flame_jupyter.widgets.panel_widget import PanelWidget

    with _panel_lock:
        if _panel is None or _panel.comm is None:
            _panel = PanelWidget()
        return _panel
