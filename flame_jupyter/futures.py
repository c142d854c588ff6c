"""ObjectFuture: flamepy's ObjectFuture with a life (state, timings, output, progress, cancel, display).

It *is* a ``flamepy.runner.ObjectFuture`` (a subclass), so it can be passed straight into any
flamepy or flame_jupyter service call as an argument: the callee receives the cached object by
reference, nothing is downloaded and uploaded again.

Example
-------
>>> f = svc(3)                     # doctest: +SKIP
>>> f.state, f.elapsed             # doctest: +SKIP
('running', 0.41)
>>> f.get()                        # doctest: +SKIP
9
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as _wait_futures
from enum import Enum
from typing import Any

from flamepy.runner.runner import ObjectFuture as _FlamepyObjectFuture

from flame_jupyter.errors import CancelledError, FlameJupyterError
from flame_jupyter.remote_errors import decode_failure

_listeners_lock = threading.Lock()
REFRESH_EVERY = 0.2  # seconds between Flame checks when an unshown future's state is read


class State(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (State.DONE, State.FAILED, State.CANCELLED)


class ObjectFuture(_FlamepyObjectFuture):
    """The result of a remote call: a flamepy ObjectFuture plus state, timings, output and display."""

    def __init__(
        self,
        inner: _FlamepyObjectFuture,
        *,
        label: str = "",
        service: str = "",
        app: str = "",
        session_id: str = "",
        call: Any = None,
    ) -> None:
        super().__init__(inner._future)
        self.label = label
        self.service = service
        self.app = app
        self.session_id = session_id
        self.task_id: str | None = getattr(inner._future, "_task_id", None)
        self.call = call  # the per-call channel (stream of output/progress, cancel flag), if any
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._state = State.QUEUED
        self._error: BaseException | None = None
        self._result_loaded = False
        self._result: Any = None
        self._cancel_requested = False
        self.streams_closed = False  # set once the last streamed record has been read
        self._output: list[tuple[str, str]] = []
        self._progress: tuple[float, float, str] | None = None
        self._displays: list[dict[str, Any]] = []
        self._preview: dict[str, Any] | None = None
        self._listeners: list[tuple[Callable[[ObjectFuture], None], bool]] = []
        # Set by the tracker: brings state/output up to date when read on a future nobody shows.
        self._refresh: Callable[[ObjectFuture], None] | None = None
        self._refreshed_at = 0.0
        self._finish_hooks: list[Callable[[ObjectFuture], None]] = []
        self._hooks_lock = threading.RLock()  # a hook may call get() itself
        self._future.add_done_callback(self._on_done)

    # -- state -------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """queued, running, done, failed or cancelled. A shown future is kept current by the
        tracker; reading it on one nobody shows asks Flame (at most every 0.2 s)."""
        self._refresh_on_access()
        return self._state.value

    @property
    def known_state(self) -> str:
        """The state as last seen, without asking Flame (for views and bookkeeping)."""
        return self._state.value

    def _refresh_on_access(self) -> None:
        if self.done() or self._refresh is None or self._has_viewer():
            return
        now = time.monotonic()
        if now - self._refreshed_at < REFRESH_EVERY:
            return
        self._refreshed_at = now
        try:
            self._refresh(self)
        except Exception:  # noqa: BLE001 - a failed check leaves the state as it was
            pass

    @property
    def elapsed(self) -> float:
        """Seconds since submission (until the end, once finished)."""
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.submitted_at)

    @property
    def run_time(self) -> float | None:
        """Seconds it ran on the executor, when known."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.started_at)

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._state == State.CANCELLED

    def mark_running(self, at: float | None = None) -> None:
        """Called by the tracker when the task is seen running."""
        if self._state == State.QUEUED:
            self.started_at = at or time.time()
            self._state = State.RUNNING
            self._notify()

    def _on_done(self, _fut: Any) -> None:
        self.finished_at = time.time()
        exc = self._future.exception()
        if exc is None:
            self._state = State.DONE
        else:
            self._error = decode_failure(exc)
            if self._cancel_requested and not isinstance(self._error, CancelledError):
                # Code stuck in C cannot be interrupted: the executor ends its instance, and Flame
                # reports that as a failure. After a cancel request, it is the cancellation.
                self._error = CancelledError(
                    f"cancelled by the user (the executor had to stop: {self._error})"
                )
            self._state = State.CANCELLED if isinstance(self._error, CancelledError) else State.FAILED
        if self.started_at is None and self._state != State.CANCELLED:
            self.started_at = self.finished_at
        self._notify()

    # -- results -----------------------------------------------------------------------------------
    def result(self, timeout: float | None = None) -> Any:
        """Alias of :meth:`get` (concurrent.futures naming)."""
        return self.get(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Wait for the result and fetch it from the object cache.

        Raises the remote exception (type preserved where possible, with the remote traceback),
        :class:`~flame_jupyter.errors.CancelledError` if cancelled, or ``TimeoutError``.
        A ``KeyboardInterrupt`` while waiting cancels the remote work, then propagates.
        """
        self._wait_or_cancel(timeout)
        if self._error is not None:
            raise self._error
        if not self._result_loaded:
            from flame_jupyter.results import fetch

            self._result = fetch(super().ref())
            self._result_loaded = True
        return self._result

    def ref(self) -> Any:
        """The ObjectRef of the result (no download)."""
        self._wait_or_cancel(None)
        if self._error is not None:
            raise self._error
        return super().ref()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until finished; True if it finished (successfully or not)."""
        try:
            self._future.exception(timeout)
        except FutureTimeout:
            return False
        except FutureCancelled:
            pass
        self._run_finish_hooks()
        self.read_remaining_output(only_if_observed=True)
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait_or_cancel(timeout)
        return self._error

    def _wait_or_cancel(self, timeout: float | None) -> None:
        try:
            self._future.exception(timeout)
        except FutureTimeout:
            raise TimeoutError(f"{self._describe()} did not finish within {timeout} s") from None
        except KeyboardInterrupt:
            self.cancel()
            raise
        self._run_finish_hooks()
        self.read_remaining_output(only_if_observed=True)

    def read_remaining_output(self, *, only_if_observed: bool = False) -> None:
        """Once finished, read the call's last streamed records now (the executor flushed them
        before it finished).

        With ``only_if_observed``, the read happens only when someone shows this future (a
        listener: widget, cell echo) or it already streamed something; otherwise it is left to
        the first access of ``output``/``displays``/``progress``/``preview``, which reads it then.
        A call that printed nothing and is never looked at costs no extra round trip.
        """
        if self.streams_closed or not self.done():
            return
        if only_if_observed and not (getattr(self.call, "seen", 0) or self._has_viewer()):
            return
        poll = getattr(self.call, "poll", None)  # calls without a stream have nothing to read
        if poll is not None:
            from flame_jupyter.calls import apply_records

            apply_records(self, poll())
        self.streams_closed = True
        self._notify()

    def __await__(self) -> Any:
        """``await future`` waits without blocking the event loop and returns the future, done
        (RFE280: ``res = await svc(1, 2); res.get()``)."""
        import asyncio

        async def _done() -> ObjectFuture:
            try:
                await asyncio.wrap_future(self._future)
            except Exception:  # noqa: BLE001 - the error is raised by get()
                pass
            return self

        return _done().__await__()

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask for the remote work to stop. Returns False if it had already finished."""
        if self.done():
            return False
        self._cancel_requested = True
        if self.call is not None:
            self.call.request_cancel()
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    # -- listeners (widgets) -----------------------------------------------------------------------
    def add_listener(self, fn: Callable[[ObjectFuture], None], *, shows_output: bool = True) -> None:
        """Call ``fn(future)`` on every change. Pass ``shows_output=False`` for bookkeeping
        (state counts): only listeners that show output make the last output read eager."""
        with _listeners_lock:
            self._listeners.append((fn, shows_output))
        if self.done():
            fn(self)

    def remove_listener(self, fn: Callable[[ObjectFuture], None]) -> None:
        with _listeners_lock:
            for i, (known, _shows) in enumerate(self._listeners):
                if known == fn:
                    del self._listeners[i]
                    break

    def _has_viewer(self) -> bool:
        with _listeners_lock:
            return any(shows for _fn, shows in self._listeners)

    def add_done_callback(self, fn: Callable[[ObjectFuture], None]) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    def add_finish_hook(self, fn: Callable[[ObjectFuture], None]) -> None:
        """Run ``fn(future)`` once when it finishes, and before any ``get()``/``wait()`` that
        sees it finished returns (a done callback alone may still be running then)."""
        with self._hooks_lock:
            self._finish_hooks.append(fn)
        self._future.add_done_callback(lambda _f: self._run_finish_hooks())

    def _run_finish_hooks(self) -> None:
        with self._hooks_lock:  # held while they run: a concurrent waiter returns after them
            hooks, self._finish_hooks = self._finish_hooks, []
            for fn in hooks:
                try:
                    fn(self)
                except Exception:  # noqa: BLE001 - a hook reports its own errors
                    pass

    def _notify(self) -> None:
        with _listeners_lock:
            listeners = [fn for fn, _shows in self._listeners]
        for fn in listeners:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a broken view must not break the future
                pass

    def record_output(self, stream: str, text: str) -> None:
        self._output.append((stream, text))
        self._notify()

    def record_progress(self, done: float, total: float, message: str = "") -> None:
        self._progress = (done, total, message)
        self._notify()

    def record_display(self, bundle: dict[str, Any]) -> None:
        self._displays.append(bundle)
        self._notify()

    def record_preview(self, bundle: dict[str, Any]) -> None:
        self._preview = bundle
        self._notify()

    # -- what the remote code streamed (complete once the future is done) --------------------------
    def _read_output_on_access(self) -> None:
        # A shown future is kept current by the tracker and get()/wait(), so its views never
        # block here; one nobody shows reads its stream when asked (while running, at most
        # every 0.2 s; once done, the last records once).
        if self.done():
            if not self.streams_closed and not self._has_viewer():
                self.read_remaining_output()
        else:
            self._refresh_on_access()

    @property
    def output(self) -> list[tuple[str, str]]:
        """``(stream, text)`` pairs printed remotely, in arrival order."""
        self._read_output_on_access()
        return self._output

    @property
    def displays(self) -> list[dict[str, Any]]:
        """Rich display bundles the remote code showed with ``display()``."""
        self._read_output_on_access()
        return self._displays

    @property
    def progress(self) -> tuple[float, float, str] | None:
        """The last ``flame_jupyter.progress(done, total, message)`` report."""
        self._read_output_on_access()
        return self._progress

    @property
    def preview(self) -> dict[str, Any] | None:
        """The result's small rich repr, made remotely (results too large to fetch eagerly)."""
        self._read_output_on_access()
        return self._preview

    @property
    def result_loaded(self) -> bool:
        """True once the result has been fetched (``get()`` is then instant)."""
        return self._result_loaded

    @property
    def error(self) -> BaseException | None:
        """The failure, once failed or cancelled (never blocks)."""
        return self._error

    # -- display -----------------------------------------------------------------------------------
    def _describe(self) -> str:
        what = self.label or self.service or "call"
        return f"{what} (task {self.task_id} of session {self.session_id})"

    def __repr__(self) -> str:
        return f"<ObjectFuture {self.label or self.service!r} {self.state} {self.elapsed:.1f}s task={self.task_id} session={self.session_id}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from flame_jupyter.views import future_mimebundle

        return future_mimebundle(self)


# -- many futures ------------------------------------------------------------------------------------
def get(futures: ObjectFuture | Iterable[ObjectFuture], timeout: float | None = None) -> Any:
    """Results of one future or a list of futures (in order)."""
    if isinstance(futures, _FlamepyObjectFuture):
        return futures.get() if timeout is None else _get_one(futures, timeout)
    items = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    return [_get_one(f, None if deadline is None else max(0.0, deadline - time.monotonic())) for f in items]


def _get_one(f: _FlamepyObjectFuture, timeout: float | None) -> Any:
    if isinstance(f, ObjectFuture):
        return f.get(timeout)
    if timeout is not None:
        f._future.exception(timeout)
    return f.get()


def ref(futures: ObjectFuture | Iterable[ObjectFuture]) -> Any:
    """ObjectRefs of one future or a list of futures, without downloading anything."""
    if isinstance(futures, _FlamepyObjectFuture):
        return futures.ref()
    return [f.ref() for f in futures]


def wait(
    futures: Iterable[ObjectFuture], timeout: float | None = None, return_when: str = "ALL_COMPLETED"
) -> tuple[list[ObjectFuture], list[ObjectFuture]]:
    """Like ``concurrent.futures.wait``: (done, not_done) lists, original order kept."""
    items = list(futures)
    by_inner = {id(f._future): f for f in items}
    done, _ = _wait_futures([f._future for f in items], timeout=timeout, return_when=return_when)
    done_ids = {id(d) for d in done}
    return [f for f in items if id(f._future) in done_ids], [
        f for f in items if id(f._future) not in done_ids and id(f._future) in by_inner
    ]


def select(futures: Iterable[ObjectFuture], timeout: float | None = None) -> ObjectFuture:
    """The first future to finish (TimeoutError if none does in time)."""
    items = list(futures)
    if not items:
        raise ValueError("select() needs at least one future")
    done, _ = wait(items, timeout=timeout, return_when=FIRST_COMPLETED)
    if not done:
        raise TimeoutError(f"none of {len(items)} futures finished within {timeout} s")
    return done[0]


def as_completed(futures: Iterable[ObjectFuture], timeout: float | None = None) -> Iterator[ObjectFuture]:
    """Yield futures as they finish."""
    from concurrent.futures import as_completed as _as_completed

    items = list(futures)
    by_inner = {id(f._future): f for f in items}
    for inner in _as_completed([f._future for f in items], timeout=timeout):
        yield by_inner[id(inner)]


__all__ = ["ObjectFuture", "State", "get", "ref", "wait", "select", "as_completed", "FlameJupyterError"]
