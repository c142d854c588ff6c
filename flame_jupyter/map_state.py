"""MapState: the one mutator of a map's counts (the group's book, as FutureState is a call's).

Only the map's driver (:mod:`flame_jupyter.maps`) changes it, through the transition methods;
readers (the group future, its widget, the status panel) see consistent counts under its lock.
Items move ``queued -> running -> done | failed | cancelled``; ``total`` is known from the start
for sized inputs and once the input is exhausted for generators.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

FAILURES_KEPT = 5  # the first failures (by input index) the group keeps for its view
RATE_WINDOW = 10.0  # seconds of finished items the throughput is measured over

Listener = Callable[[Any], None]


class MapState:
    """Counts, timings, first failures and listeners of one map."""

    def __init__(self, total: int | None, label: str, service: str, session_id: str) -> None:
        self.label = label
        self.service = service
        self.session_id = session_id
        self.total = total
        self.pulled = 0
        self.queued = self.running = self.done = self.failed = self.cancelled = 0
        self.chunks = 0
        self.submitted_at = time.time()
        self.finished_at: float | None = None
        self.exhausted = total == 0
        self.cancel_requested = False
        self.error: BaseException | None = None  # the driver itself failed (input, submission)
        self.failures: list[tuple[int, BaseException]] = []
        self._finished_times: collections.deque[tuple[float, int]] = collections.deque()
        self._listeners: list[Listener] = []
        self.owner: Any = None
        self._lock = threading.RLock()
        self._ended = threading.Event()

    # -- transitions (the driver only) -------------------------------------------------------------
    def pulled_items(self, n: int) -> None:
        with self._lock:
            self.pulled += n
            self.queued += n
            self.chunks += 1
        self.notify()

    def input_exhausted(self) -> None:
        with self._lock:
            self.exhausted = True
            self.total = self.pulled
        self.notify()

    def chunk_running(self, n: int) -> None:
        with self._lock:
            n = min(n, self.queued)
            self.queued -= n
            self.running += n
        self.notify()

    def items_finished(self, was_running: bool, ok: int, failed: list[tuple[int, BaseException]]) -> None:
        """``ok`` items done and ``failed`` (index, error) items failed, of one chunk."""
        n = ok + len(failed)
        with self._lock:
            self._take(was_running, n)
            self.done += ok
            self.failed += len(failed)
            if failed:
                self.failures = sorted(self.failures + failed, key=lambda f: f[0])[:FAILURES_KEPT]
            self._finished_times.append((time.time(), n))
        self.notify()

    def items_cancelled(self, was_running: bool, n: int) -> None:
        with self._lock:
            self._take(was_running, n)
            self.cancelled += n
        self.notify()

    def _take(self, was_running: bool, n: int) -> None:
        if was_running:
            self.running -= min(n, self.running)
        else:
            self.queued -= min(n, self.queued)

    def request_cancel(self) -> None:
        with self._lock:
            self.cancel_requested = True
        self.notify()

    def driver_failed(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.notify()

    def end(self) -> None:
        """Nothing is left to run (all items finished, or the rest was never pulled)."""
        with self._lock:
            if self.finished_at is None:
                self.finished_at = time.time()
                if not self.exhausted:  # cancelled or failed before the input ended
                    self.total = self.pulled
                    self.exhausted = True
        self._ended.set()
        self.notify()

    # -- reads ---------------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._ended.wait(timeout)

    def counts(self) -> dict[str, Any]:
        """``{"total", "done", "failed", "cancelled", "running", "queued"}`` (total None: not known yet)."""
        with self._lock:
            return {
                "total": self.total,
                "done": self.done,
                "failed": self.failed,
                "cancelled": self.cancelled,
                "running": self.running,
                "queued": self.queued,
            }

    def throughput(self) -> float:
        """Items finished per second: over the last ``RATE_WINDOW`` s while running, overall once ended."""
        with self._lock:
            finished = self.done + self.failed
            if self.finished_at is not None:
                span = max(1e-6, self.finished_at - self.submitted_at)
                return finished / span
            now = time.time()
            while self._finished_times and now - self._finished_times[0][0] > RATE_WINDOW:
                self._finished_times.popleft()
            n = sum(k for _t, k in self._finished_times)
            span = min(RATE_WINDOW, max(1e-6, now - self.submitted_at))
            return n / span

    def eta(self) -> float | None:
        """Seconds until all items are finished at the current throughput (None: unknown)."""
        with self._lock:
            if self.finished_at is not None:
                return 0.0
            total = self.total
            left = None if total is None else total - self.done - self.failed - self.cancelled
        rate = self.throughput()
        if left is None or rate <= 0:
            return None
        return left / rate

    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.submitted_at)

    # -- listeners -----------------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def has_listeners(self) -> bool:
        with self._lock:
            return bool(self._listeners)

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(self.owner)
            except Exception:  # noqa: BLE001 - a broken view must not break the map
                pass


# -- the maps of this process (the status panel's map rows) ------------------------------------------
_groups: collections.deque[weakref.ref[MapState]] = collections.deque(maxlen=50)
_groups_lock = threading.Lock()


def register(state: MapState) -> None:
    with _groups_lock:
        _groups.append(weakref.ref(state))


def recent_maps() -> list[MapState]:
    """The maps of this process still referenced, oldest first (bounded)."""
    with _groups_lock:
        return [s for s in (r() for r in _groups) if s is not None]
