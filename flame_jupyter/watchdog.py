"""While someone waits on a call or shows it: is Flame answering, and can the call still start?

Two things flamepy's future never reports, found with one cheap GetSession (with a deadline) per
session at most every ``CHECK_EVERY`` seconds, and only while someone waits on a future
(``get()``/``wait``, in slices of ``SLICE`` s) or shows it (the tracker's refresh):

- Flame does not answer within the deadline (``FLAME_JUPYTER_DEADLINE``, 30 s): the wait raises
  "Flame is not answering (endpoint ...)"; the future itself stays as it was (Flame may come
  back). A call that simply runs long is waited for: the check is Flame's answer, not the call's.
- the session's executor cannot be bound (a failed package install, a module missing at
  OnSessionEnter): Flame v0.6.0 leaves the task pending for good and records event 1001 (bind
  failed, with the error) per attempt and 1002 once the retry limit is reached. On 1002 a queued
  future ends ``failed`` with the last 1001 message.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flame_jupyter import _flamepy
from flame_jupyter.errors import FlameJupyterError
from flame_jupyter.future_state import state_of
from flame_jupyter.remote.wire import State

SLICE = 2.0  # a waiter looks at Flame between waits of this long
CHECK_EVERY = 1.9  # at most one GetSession per session this often
BIND_FAILED, RETRY_LIMIT = 1001, 1002  # Flame's session events

_lock = threading.Lock()
_status: dict[str, tuple[float, str | None]] = {}  # session id -> (checked at, unanswered text)


class NotAnsweringError(FlameJupyterError):
    """Flame did not answer within the deadline (the call may still be running)."""


def wait(future: Any, timeout: float | None) -> None:
    """Wait for ``future``'s inner future to finish (``concurrent.futures.TimeoutError`` after
    ``timeout``), checking Flame between slices; raises :class:`NotAnsweringError`."""
    inner = _flamepy.inner_future(future)
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if end is None else end - time.monotonic()
        try:
            inner.exception(SLICE if left is None else max(0.0, min(SLICE, left)))
            return
        except FutureTimeout:
            if left is not None and left <= SLICE:
                raise
        check(future, raise_unanswered=True)


def check(future: Any, *, raise_unanswered: bool = False) -> None:
    """Look at the future's session (rate-limited per session): fail a queued future whose
    executor cannot be bound; with ``raise_unanswered``, raise when Flame did not answer."""
    fs = state_of(future)
    session = fs.session
    if session is None or fs.state.terminal or future.done():
        return
    now = time.monotonic()
    with _lock:
        last = _status.get(session.id)
        due = last is None or now - last[0] >= CHECK_EVERY
        if due:
            _status[session.id] = (now, None if last is None else last[1])
    if not due:
        if raise_unanswered and last is not None and last[1]:
            raise NotAnsweringError(last[1])
        return
    try:
        events = _flamepy.session_events(session, _flamepy.deadline())
    except Exception as e:  # noqa: BLE001 - unreachable, closed, ...: only no answer matters here
        text = _unanswered(e)
        with _lock:
            _status[session.id] = (time.monotonic(), text)
        if raise_unanswered and text:
            raise NotAnsweringError(text) from None
        return
    with _lock:
        _status[session.id] = (time.monotonic(), None)
    if fs.state == State.QUEUED and any(code == RETRY_LIMIT for code, _ in events):
        _fail_unbindable(future, session.id, events)


def _unanswered(exc: BaseException) -> str | None:
    import grpc

    code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _flamepy.not_answering(f"no answer to GetSession within {_flamepy.deadline():g} s")
    return None


def _fail_unbindable(future: Any, session_id: str, events: list[tuple[int, str]]) -> None:
    binds = [message for code, message in events if code == BIND_FAILED]
    last = binds[-1] if binds else "(Flame gave no reason)"
    error = FlameJupyterError(
        f"could not start an executor for session {session_id}: Flame gave up after "
        f"{len(binds)} failed bind attempt(s) (event {RETRY_LIMIT}); the last error: {last}"
    )
    fs = state_of(future)
    fs.finish(error)
    _flamepy.fail_inner(future, error)
    fs.run_finish_hooks()
