"""What Flame itself reports for the status panel: per-session counts and embedded-runtime instances.

Blocking gRPC calls: the panel widget runs :func:`flame_status` on a worker thread.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlparse

CLUSTER_SESSIONS_POLLED = 20  # on a cluster, only this kernel's sessions are asked about


def connection_mode() -> tuple[str | None, str]:
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
    mode, runtime = connection_mode()
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
        # one machine's Flame (embedded, `flame-local start`, or a cluster on loopback): its
        # instances are few and worth showing
        embedded = mode == "embedded" or _is_loopback(os.environ.get("FLAME_ENDPOINT", ""))
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
