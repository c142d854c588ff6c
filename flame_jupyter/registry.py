"""What this kernel (or script) has running on Flame: services, sessions and recent futures.

One registry per process feeds the status panel and ``%flame status``. Futures are kept weakly
once finished (a bounded history), so a completed future costs nothing after it is dropped.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flame_jupyter.remote.wire import TERMINAL

#: Key of ``ServiceInfo.counts``: cancelled calls that were a Flame task of their own (not in a batch).
CANCELLED_TASKS = "cancelled-tasks"

if TYPE_CHECKING:
    from flame_jupyter.futures import ObjectFuture

HISTORY = 200  # finished futures remembered for the panel (failures are what people look for)


@dataclass
class ServiceInfo:
    """A remote service this process created."""

    name: str
    kind: str  # "function" | "class" | "instance" | "cell"
    app: str
    session_id: str
    created_at: float = field(default_factory=time.time)
    closed: bool = False
    handle: Any = None  # the flame_jupyter Service object (weakly meaningful; may be None)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    recent_failures: collections.deque[Any] = field(default_factory=lambda: collections.deque(maxlen=20))
    finished_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=500))

    def throughput(self, window: float = 10.0) -> float:
        """Tasks finished per second over the last ``window`` seconds."""
        now = time.time()
        recent = [t for t in self.finished_times if now - t <= window]
        return len(recent) / window


class Registry:
    """Thread-safe book of services and futures; listeners hear about every change."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.services: dict[str, ServiceInfo] = {}
        self._live: dict[int, ObjectFuture] = {}
        self._seen_state: dict[int, str] = {}  # id(live future) -> the state last counted
        self._finished: collections.deque[weakref.ref[ObjectFuture]] = collections.deque(maxlen=HISTORY)
        self._listeners: list[Any] = []
        self.version = 0

    # -- services ------------------------------------------------------------------------------------
    def add_service(self, info: ServiceInfo) -> None:
        with self._lock:
            self.services[info.session_id] = info
            self._changed()

    def close_service(self, session_id: str) -> None:
        with self._lock:
            info = self.services.get(session_id)
            if info is not None:
                info.closed = True
                self._changed()

    def open_services(self) -> list[ServiceInfo]:
        with self._lock:
            return [s for s in self.services.values() if not s.closed]

    # -- futures -------------------------------------------------------------------------------------
    def add_future(self, future: ObjectFuture) -> None:
        with self._lock:
            self._live[id(future)] = future
            info = self.services.get(future.session_id)
            if info is not None:
                info.counts["queued"] += 1
            self._changed()
        future.add_listener(self._on_future, shows_output=False)

    def _on_future(self, future: ObjectFuture) -> None:
        with self._lock:
            info = self.services.get(future.session_id)
            key = id(future)
            state = future.known_state
            if key not in self._live:  # already counted as finished
                return
            previous = self._seen_state.get(key, "queued")
            if state == previous:
                return
            self._seen_state[key] = state
            if info is not None:
                info.counts[previous] -= 1
                info.counts[state] += 1
                if state in TERMINAL:
                    info.finished_times.append(time.time())
                if state == "failed":
                    info.recent_failures.append(weakref.ref(future))
                if state == "cancelled" and not getattr(future, "coalesced", False):
                    info.counts[CANCELLED_TASKS] += 1  # its own task ends Failed on Flame
            if state in TERMINAL:
                self._seen_state.pop(key, None)
                del self._live[key]
                self._finished.append(weakref.ref(future))
            self._changed()

    def live_futures(self) -> list[ObjectFuture]:
        with self._lock:
            return list(self._live.values())

    def recent_futures(self) -> list[ObjectFuture]:
        with self._lock:
            return [f for f in (r() for r in self._finished) if f is not None]

    # -- listeners -----------------------------------------------------------------------------------
    def has_subscribers(self) -> bool:
        """True while a status panel (or anything else) follows every future."""
        with self._lock:
            return bool(self._listeners)

    def subscribe(self, fn: Any) -> None:
        with self._lock:
            self._listeners.append(fn)

    def unsubscribe(self, fn: Any) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _changed(self) -> None:
        self.version += 1
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # noqa: BLE001 - a broken panel must not break calls
                pass

    def clear(self) -> None:
        with self._lock:
            self.services.clear()
            self._live.clear()
            self._seen_state.clear()
            self._finished.clear()
            self._changed()


registry = Registry()
