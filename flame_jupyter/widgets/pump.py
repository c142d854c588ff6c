"""The update pump: one background thread that batches and throttles every widget's updates.

Futures change from any thread (gRPC callbacks, output readers), thousands of times a second
when many run. Listeners only *mark* a widget dirty (``Pump.request``, O(1), thread-safe); the
pump thread later calls the widget's ``flush()``, which reads the future once and sends at most
one comm message (``hold_sync``). Per tick the pump flushes each dirty widget once, at most
``max_rate * interval`` widgets (state changes first, then progress/output, oldest first), and
ticks at most every ``interval`` seconds. So the front end sees at most ``max_rate`` messages per
second and each widget at most ``1 / interval`` updates per second, however busy the futures are.

The thread sleeps on a condition when nothing is dirty: an idle or finished widget costs nothing.
All widget trait writes happen on this thread (a single writer), so ipywidgets' ``hold_sync``
bookkeeping is never raced.

Example
-------
>>> from flame_jupyter.widgets.pump import pump
>>> pump().configure(interval=0.5, max_rate=50)   # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25  # seconds between ticks: each widget updates at most 4 times a second
DEFAULT_MAX_RATE = 150.0  # widget messages per second, all widgets together


class Flushable(Protocol):
    """What the pump drives: ``flush()`` sends the widget's current state (one message at most)."""

    def flush(self) -> None: ...


class Pump:
    """Batches and rate-limits widget flushes on one daemon thread (see the module docstring)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, max_rate: float = DEFAULT_MAX_RATE) -> None:
        self.interval = interval
        self.max_rate = max_rate
        self._cond = threading.Condition(threading.Lock())
        self._urgent: dict[int, Flushable] = {}  # insertion-ordered: oldest first
        self._normal: dict[int, Flushable] = {}
        self._delayed: list[tuple[float, int, int, Flushable]] = []  # (due, seq, id, client)
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._workers: ThreadPoolExecutor | None = None
        self._stopped = False
        self._busy = False
        self.flushes = 0  # total flush() calls, for tests and the benchmark
        self.ticks = 0
        self.requests = 0

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, *, interval: float | None = None, max_rate: float | None = None) -> None:
        """Change the tick interval (seconds) or the message budget (messages per second)."""
        with self._cond:
            if interval is not None:
                if interval <= 0:
                    raise ValueError("interval must be > 0 seconds")
                self.interval = interval
            if max_rate is not None:
                if max_rate <= 0:
                    raise ValueError("max_rate must be > 0 messages per second")
                self.max_rate = max_rate

    @property
    def budget(self) -> int:
        """Flushes allowed per tick."""
        return max(1, int(self.max_rate * self.interval))

    # -- requests (any thread) ----------------------------------------------------------------------
    def request(self, client: Flushable, *, urgent: bool = False, delay: float = 0.0) -> None:
        """Mark ``client`` dirty: it is flushed on a coming tick (after ``delay`` seconds if given)."""
        key = id(client)
        with self._cond:
            if self._stopped:
                return
            self.requests += 1
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key, client))
            elif urgent:
                self._normal.pop(key, None)
                self._urgent.setdefault(key, client)
            elif key not in self._urgent:
                self._normal.setdefault(key, client)
            self._ensure_thread()
            self._cond.notify()

    def forget(self, client: Flushable) -> None:
        """Drop any pending flush of ``client`` (delayed ones included)."""
        key = id(client)
        with self._cond:
            self._urgent.pop(key, None)
            self._normal.pop(key, None)
            if any(k == key for _, _, k, _ in self._delayed):
                self._delayed = [d for d in self._delayed if d[2] != key]
                heapq.heapify(self._delayed)

    def pending(self) -> int:
        """How many flushes are waiting (delayed ones included)."""
        with self._cond:
            return len(self._urgent) + len(self._normal) + len(self._delayed)

    def idle(self) -> bool:
        """True when nothing waits and no tick is running."""
        with self._cond:
            return not (self._urgent or self._normal or self._delayed or self._busy)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the pump has nothing to do (delayed flushes excluded); for tests and scripts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not (self._urgent or self._normal or self._busy):
                    return True
            time.sleep(0.01)
        return False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a small worker pool (slow work: result previews, Flame calls)."""
        with self._cond:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="flame-jupyter-widgets")
            workers = self._workers
        workers.submit(_guarded, fn, *args)

    def stop(self) -> None:
        """Stop the thread (tests); pending flushes are dropped."""
        with self._cond:
            self._stopped = True
            self._urgent.clear()
            self._normal.clear()
            self._delayed.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
            workers, self._workers = self._workers, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)

    # -- the thread ---------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="flame-jupyter-pump", daemon=True)
            self._thread.start()

    def _take(self) -> list[Flushable] | None:
        """Wait for work; return one tick's batch (None when stopped)."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key, client = heapq.heappop(self._delayed)
                    if key not in self._urgent:
                        self._normal.setdefault(key, client)
                if self._urgent or self._normal:
                    break
                timeout = self._delayed[0][0] - now if self._delayed else None
                self._cond.wait(timeout)
            batch: list[Flushable] = []
            budget = self.budget
            for queue in (self._urgent, self._normal):
                while queue and len(batch) < budget:
                    key = next(iter(queue))
                    batch.append(queue.pop(key))
            self._busy = True
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            started = time.monotonic()
            try:
                for client in batch:
                    try:
                        client.flush()
                    except Exception:  # noqa: BLE001 - one broken widget must not stop the others
                        log.exception("flame_jupyter: widget update failed")
                    self.flushes += 1
            finally:
                with self._cond:
                    self._busy = False
                    self.ticks += 1
            rest = self.interval - (time.monotonic() - started)
            if rest > 0:
                with self._cond:
                    if not self._stopped:
                        self._cond.wait_for(lambda: self._stopped, timeout=rest)


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - background work reports through the widget, never raises
        log.exception("flame_jupyter: background widget work failed")


_pump: Pump | None = None
_pump_lock = threading.Lock()


def pump() -> Pump:
    """The process-wide pump (created on first use)."""
    global _pump
    with _pump_lock:
        if _pump is None:
            _pump = Pump()
        return _pump


def reset_pump(new: Pump | None = None) -> Pump:
    """Replace the process-wide pump (tests); the old one is stopped."""
    global _pump
    with _pump_lock:
        old, _pump = _pump, new or Pump()
        current = _pump
    if old is not None:
        old.stop()
    return current
