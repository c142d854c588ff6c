"""One background thread that keeps live futures' state and output current.

Every ``INTERVAL`` seconds, per session: the oldest few queued futures are checked with
``GetTask`` (Flame runs a session's tasks in order, so later ones cannot have started), and
running futures' call streams are read (version-aware gets: only new records travel). The work
per tick is bounded by ``PER_SESSION`` whatever the number of futures; a finished future gets one
last stream read and is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from flame_jupyter.calls import apply_records

if TYPE_CHECKING:
    from flame_jupyter.futures import ObjectFuture

INTERVAL = 0.2
PER_SESSION = 8


class Tracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[int, tuple[ObjectFuture, Any]] = {}  # id -> (future, flamepy session)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, future: ObjectFuture, session: Any) -> None:
        with self._lock:
            self._futures[id(future)] = (future, session)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="flame-jupyter-tracker", daemon=True)
                self._thread.start()
        future.add_done_callback(lambda f: self._wake.set())

    def tracked(self) -> int:
        with self._lock:
            return len(self._futures)

    def _loop(self) -> None:
        idle_ticks = 0
        while True:
            self._wake.wait(INTERVAL)
            self._wake.clear()
            with self._lock:
                items = list(self._futures.values())
            if not items:
                idle_ticks += 1
                if idle_ticks > 50:  # nothing for 10 s: end; track() starts a new thread
                    with self._lock:
                        if not self._futures:
                            self._thread = None
                            return
                continue
            idle_ticks = 0
            try:
                self._tick(items)
            except Exception:  # noqa: BLE001 - the tracker must survive anything
                pass

    def _tick(self, items: list[tuple[ObjectFuture, Any]]) -> None:
        by_session: dict[str, list[tuple[ObjectFuture, Any]]] = defaultdict(list)
        finished = []
        for fut, session in items:
            if fut.done():
                finished.append(fut)
            else:
                by_session[fut.session_id].append((fut, session))
        for fut in finished:
            fut.read_remaining_output()  # the executor flushed before finishing: nothing more comes
            with self._lock:
                self._futures.pop(id(fut), None)
        for entries in by_session.values():
            entries.sort(key=lambda e: e[0].submitted_at)
            checked = 0
            for fut, session in entries:
                if checked >= PER_SESSION:
                    break
                checked += 1
                if fut.state == "queued" and fut.task_id is not None:
                    self._check_started(fut, session)
                if fut.state == "running" and fut.call is not None:
                    apply_records(fut, fut.call.poll())

    @staticmethod
    def _check_started(fut: ObjectFuture, session: Any) -> None:
        try:
            task = session.get_task(fut.task_id)
        except Exception:  # noqa: BLE001 - e.g. TaskState(4) (cancelled) is unknown to flamepy
            return
        state = getattr(getattr(task, "state", None), "value", None)
        if state is not None and state >= 1:
            when = None
            for ev in getattr(task, "events", []) or []:
                if getattr(ev, "code", None) == 1 and getattr(ev, "creation_time", None) is not None:
                    when = ev.creation_time.timestamp()
            fut.mark_running(when or time.time())


tracker = Tracker()
