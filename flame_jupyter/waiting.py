"""What a queued call waits for, from what any Flame tells a client.

Flame v0.6.0 shows a client its executors (``ListExecutor``: state and bound session) but not why
a task is pending. A pending task of a session without a bound executor waits for an instance to
start (Flame allocates one per pending task; it starts Python and installs the application's
package first, seconds on a cluster); with bound instances it waits for the calls submitted
before it in the same session (Flame runs a session's tasks in order), which the kernel knows.
"""

from __future__ import annotations

import threading
import time

__all__ = ["WAITING_FOR_INSTANCE", "bound_instances", "waiting_text"]

WAITING_FOR_INSTANCE = "waiting for an instance (starting Python, installing the package …)"
_BOUND = 4  # ExecutorState.ExecutorBound (rpc/protos/types.proto)
_FRESH_S = 0.5  # one ListExecutor serves every queued call of a session this long

_lock = threading.Lock()
_seen: dict[str, tuple[float, int]] = {}  # session id -> (monotonic time, bound executors)


def waiting_text(*, bound: int, ahead: int) -> str:
    """The view's text for a queued call: ``bound`` instances of its session, ``ahead`` of the
    kernel's calls of the session submitted before it still queued or running."""
    if bound <= 0:
        return WAITING_FOR_INSTANCE
    if ahead >= bound:
        return f"queued behind {ahead} call{'' if ahead == 1 else 's'}"
    return "starting on an instance"


def bound_instances(session_id: str) -> int | None:
    """Executors bound to the session now (None when Flame cannot be asked)."""
    now = time.monotonic()
    with _lock:
        seen = _seen.get(session_id)
        if seen is not None and now - seen[0] < _FRESH_S:
            return seen[1]
    try:
        from flamepy.core.client import list_executors

        executors = list_executors()
    except Exception:  # noqa: BLE001 - the view keeps what it said before
        return None
    counts: dict[str, int] = {}
    for e in executors:
        sid = e.status.session_id
        if sid and e.status.state == _BOUND:
            counts[sid] = counts.get(sid, 0) + 1
    with _lock:
        if len(_seen) > 1000:
            _seen.clear()
        for sid in {session_id, *counts}:
            _seen[sid] = (now, counts.get(sid, 0))
    return counts.get(session_id, 0)
