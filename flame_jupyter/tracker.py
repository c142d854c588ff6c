"""One background thread that keeps live futures' state and output current.

Every ``INTERVAL`` seconds, per session, for futures someone shows (a widget, a cell's echo) or
while a status panel is open: the oldest few queued futures are checked with
``GetTask`` (Flame runs a session's tasks in order, so later ones cannot have started), and
running futures' call streams are read (version-aware gets: only new records travel). The work
per tick is bounded by ``PER_SESSION`` whatever the number of futures (a finished future leaves
the book at once, from its done callback); a finished future that is shown gets one last stream
read. A future nobody shows costs nothing here: reading its ``state`` or ``output`` asks Flame
then (at most every 0.2 s), so a loop of thousands of calls pays no polling.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from flame_jupyter import waiting, watchdog
from flame_jupyter.calls import apply_records, drain
from flame_jupyter.future_state import FutureState, state_of
from flame_jupyter.registry import registry
from flame_jupyter.remote.wire import State

if TYPE_CHECKING:
    from flame_jupyter.futures import ObjectFuture

INTERVAL = 0.2
PER_SESSION = 8


class Tracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # session id -> {id(future): (future, its state, flamepy session)}, in submission order
        self._live: dict[str, dict[int, tuple[ObjectFuture, FutureState, Any]]] = {}
        self._finished: deque[FutureState] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, future: ObjectFuture, session: Any) -> None:
        fs = state_of(future)
        fs.session = session
        fs.refresher = lambda st: self._refresh(future, st, session)
        with self._lock:
            self._live.setdefault(future.session_id, {})[id(future)] = (future, fs, session)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="flame-jupyter-tracker", daemon=True)
                self._thread.start()
        future.add_done_callback(self._on_done)

    def _on_done(self, future: ObjectFuture) -> None:
        with self._lock:
            live = self._live.get(future.session_id)
            entry = None if live is None else live.pop(id(future), None)
            if entry is not None:
                if not live:
                    del self._live[future.session_id]
                self._finished.append(entry[1])
        self._wake.set()

    def tracked(self) -> int:
        with self._lock:
            return sum(len(live) for live in self._live.values()) + len(self._finished)

    def _loop(self) -> None:
        idle_ticks = 0
        while True:
            self._wake.wait(INTERVAL)
            self._wake.clear()
            with self._lock:
                finished = list(self._finished)
                self._finished.clear()
                # Flame runs a session's tasks in order: only the oldest few can change state.
                heads = [list(itertools.islice(live.values(), PER_SESSION)) for live in self._live.values()]
            if not finished and not heads:
                idle_ticks += 1
                if idle_ticks > 50:  # nothing for 10 s: end; track() starts a new thread
                    with self._lock:
                        if not self._live and not self._finished:
                            self._thread = None
                            return
                continue
            idle_ticks = 0
            try:
                self._tick(finished, heads)
            except Exception:  # noqa: BLE001 - the tracker must survive anything
                pass

    def _tick(
        self, finished: list[FutureState], heads: list[list[tuple[ObjectFuture, FutureState, Any]]]
    ) -> None:
        for fs in finished:
            # The executor flushed before finishing: nothing more comes. Read now only for a
            # future someone shows; others read on first access of their output.
            drain(fs, only_if_observed=True)
        panel_open = registry.has_subscribers()
        for entries in heads:
            for fut, fs, session in entries:
                # Only futures someone shows (or counts, in an open status panel) are polled;
                # the others are checked when their state or output is read.
                if not fut.done() and (panel_open or fs.has_viewer()):
                    self._refresh(fut, fs, session)

    def _refresh(self, fut: ObjectFuture, fs: FutureState, session: Any) -> None:
        """Bring a live call's state and streamed output up to date (one or two round trips)."""
        if fs.state == State.QUEUED and fut.task_id is not None:
            self._check_started(fut.task_id, fs, session)
        if fs.state == State.QUEUED:
            watchdog.check(fut)  # a session whose executor cannot be bound fails its calls
        if fs.state == State.QUEUED:
            self._note_waiting(fut, fs)
        if fs.state == State.RUNNING and fs.call is not None:
            apply_records(fs, fs.call.poll())

    def _note_waiting(self, fut: ObjectFuture, fs: FutureState) -> None:
        """Say what the queued call waits for: an instance, or this kernel's calls ahead of it."""
        bound = waiting.bound_instances(fut.session_id)
        if bound is None:
            return
        with self._lock:
            ahead = 0
            for other, _ofs, _ssn in (self._live.get(fut.session_id) or {}).values():
                if other is fut:
                    break
                ahead += 0 if other.done() else 1
        fs.set_waiting(waiting.waiting_text(bound=bound, ahead=ahead))

    @staticmethod
    def _check_started(task_id: str, fs: FutureState, session: Any) -> None:
        try:
            task = session.get_task(task_id)
        except Exception:  # noqa: BLE001 - e.g. TaskState(4) (cancelled) is unknown to flamepy
            return
        state = getattr(getattr(task, "state", None), "value", None)
        if state is not None and state >= 1:
            when = None
            for ev in getattr(task, "events", []) or []:
                if getattr(ev, "code", None) == 1 and getattr(ev, "creation_time", None) is not None:
                    when = ev.creation_time.timestamp()
            fs.running(when or time.time())


tracker = Tracker()
