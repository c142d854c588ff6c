"""FutureState: the one mutator of a remote call's state (the kernel-side book of one task).

An :class:`~flame_jupyter.futures.ObjectFuture` is the user's face of a call; everything that
*feeds* it (the SDK when it submits, the tracker when it sees the task running, the call
channel's streamed records, the flamepy future finishing) goes through this object, and only
this object changes what the future reports. Modelled on dask/distributed's ``FutureState``:
transitions are methods, readers see consistent values, and a transition never raises (a
failure while decoding a remote error still ends the call ``failed``).

Example (what the SDK and the tracker do; users never need it)::

    fs = FutureState(call=channel)
    fs.running()                        # queued -> running (once)
    fs.add_output("stdout", "hello\\n")
    fs.finish(None)                     # -> done
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flame_jupyter.remote.wire import State

_listeners_lock = threading.Lock()

#: Characters of printed output a future keeps (the last ones; ``output_dropped`` counts the rest).
OUTPUT_LIMIT = int(os.environ.get("FLAME_JUPYTER_OUTPUT_LIMIT", 32 << 20))

Listener = Callable[[Any], None]  # called with the ObjectFuture this state belongs to


class FutureState:
    """State, timings, error, streamed output and listeners of one call."""

    def __init__(self, *, call: Any = None) -> None:
        self.call = call  # the per-call channel (stream of output/progress, cancel flag), if any
        self.state = State.QUEUED
        self.submitted_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self.cancel_requested = False
        self.streams_closed = False  # set once the last streamed record has been read
        self.output: list[tuple[str, str]] = []  # the last OUTPUT_LIMIT characters printed
        self.output_size = 0  # characters in ``output``
        self.output_dropped = 0  # characters printed before those (not kept)
        self.session: Any = None  # the flamepy session of the call (set by the tracker)
        self.progress: tuple[float, float, str] | None = None
        self.displays: list[dict[str, Any]] = []
        self.preview: dict[str, Any] | None = None
        self.waiting: str | None = None  # what a queued call waits for (flame_jupyter.waiting)
        # Set by the tracker: brings state/output up to date when read on a future nobody shows.
        self.refresher: Callable[[FutureState], None] | None = None
        self.refreshed_at = 0.0
        self.owner: Any = None  # the ObjectFuture listeners are called with
        self._listeners: list[tuple[Listener, bool]] = []
        self._finish_hooks: list[Listener] = []
        self._hooks_lock = threading.RLock()  # a hook may call get() itself
        self._finish_lock = threading.Lock()  # guards every state transition

    # -- transitions -----------------------------------------------------------------------------
    def running(self, at: float | None = None) -> None:
        """queued -> running (no-op in any other state)."""
        with self._finish_lock:
            if self.state != State.QUEUED:
                return
            self.started_at = at or time.time()
            self.state = State.RUNNING
            self.waiting = None
        self.notify()

    def finish(
        self, exc: BaseException | None, decode: Callable[[BaseException], BaseException] | None = None
    ) -> None:
        """The task ended: done (``exc`` is None), failed, or cancelled.

        ``decode`` turns flamepy's error into the user's exception; if it raises, the call still
        ends failed, with that decoding error chained to the original one. Only the first call
        counts (the done callback and a waiter may both report the end).
        """
        with self._finish_lock:
            if self.state.terminal:
                return
            self._finish(exc, decode)
        self.notify()

    def _finish(
        self, exc: BaseException | None, decode: Callable[[BaseException], BaseException] | None
    ) -> None:
        from flame_jupyter.errors import CancelledError

        finished_at = time.time()
        if exc is None:
            state = State.DONE
        else:
            error = exc
            if decode is not None:
                try:
                    error = decode(exc)
                except BaseException as decode_error:  # noqa: BLE001 - the state must end true
                    error = RuntimeError(f"the call failed and its error could not be decoded: {exc}")
                    error.__cause__ = decode_error
            if self.cancel_requested and not isinstance(error, CancelledError):
                # Code stuck in C cannot be interrupted: the executor ends its instance, and Flame
                # reports that as a failure. After a cancel request, it is the cancellation.
                error = CancelledError(f"cancelled by the user (the executor had to stop: {error})")
            self.error = error
            state = State.CANCELLED if isinstance(error, CancelledError) else State.FAILED
        if self.started_at is None and state != State.CANCELLED:
            self.started_at = finished_at
        self.finished_at = finished_at
        self.state = state  # last: a reader that sees a terminal state sees its error and times

    def request_cancel(self, grace: float | None = None) -> None:
        self.cancel_requested = True
        if self.call is None:
            return
        if grace is None:
            self.call.request_cancel()
        else:
            self.call.request_cancel(grace)

    def add_output(self, stream: str, text: str) -> None:
        """Keep ``text``; past ``OUTPUT_LIMIT`` characters in all, the oldest are dropped (whole
        records, or the head of one record larger than the limit)."""
        if len(text) > OUTPUT_LIMIT:
            self.output_dropped += len(text) - OUTPUT_LIMIT
            text = text[-OUTPUT_LIMIT:] if OUTPUT_LIMIT > 0 else ""
        self.output.append((stream, text))
        self.output_size += len(text)
        if self.output_size > OUTPUT_LIMIT:
            drop, size = 0, self.output_size
            while size > OUTPUT_LIMIT and drop < len(self.output):
                size -= len(self.output[drop][1])
                drop += 1
            self.output_dropped += self.output_size - size
            self.output_size = size
            del self.output[:drop]
        self.notify()

    def set_progress(self, done: float, total: float, message: str = "") -> None:
        self.progress = (done, total, message)
        self.notify()

    def add_display(self, bundle: dict[str, Any]) -> None:
        self.displays.append(bundle)
        self.notify()

    def set_preview(self, bundle: dict[str, Any]) -> None:
        self.preview = bundle
        self.notify()

    def set_waiting(self, text: str | None) -> None:
        """What the queued call waits for now (ignored once it runs or ended)."""
        with self._finish_lock:
            if self.state != State.QUEUED or text == self.waiting:
                return
            self.waiting = text
        self.notify()

    def close_streams(self) -> None:
        """The last streamed record has been read: nothing more comes."""
        self.streams_closed = True
        self.notify()

    # -- refresh on access -----------------------------------------------------------------------
    def refresh(self, every: float) -> None:
        """Ask Flame for news (at most every ``every`` seconds) when nobody keeps this current."""
        if self.state.terminal or self.refresher is None or self.has_viewer():
            return
        now = time.monotonic()
        if now - self.refreshed_at < every:
            return
        self.refreshed_at = now
        try:
            self.refresher(self)
        except Exception:  # noqa: BLE001 - a failed check leaves the state as it was
            pass

    # -- listeners and finish hooks --------------------------------------------------------------
    def add_listener(self, fn: Listener, shows_output: bool) -> None:
        with _listeners_lock:
            self._listeners.append((fn, shows_output))

    def remove_listener(self, fn: Listener) -> None:
        with _listeners_lock:
            for i, (known, _shows) in enumerate(self._listeners):
                if known == fn:
                    del self._listeners[i]
                    break

    def listeners(self) -> int:
        """How many listeners follow this call (views, bookkeeping)."""
        with _listeners_lock:
            return len(self._listeners)

    def has_viewer(self) -> bool:
        with _listeners_lock:
            return any(shows for _fn, shows in self._listeners)

    def notify(self) -> None:
        with _listeners_lock:
            listeners = [fn for fn, _shows in self._listeners]
        owner = self.owner
        if owner is None:
            return
        for fn in listeners:
            try:
                fn(owner)
            except Exception:  # noqa: BLE001 - a broken view must not break the future
                pass

    def add_finish_hook(self, fn: Listener) -> None:
        """Run ``fn(future)`` once when the call finishes, before any ``get()``/``wait()`` that
        sees it finished returns (now, if it already has)."""
        with self._hooks_lock:
            self._finish_hooks.append(fn)
        if self.state.terminal:
            self.run_finish_hooks()

    def run_finish_hooks(self) -> None:
        owner = self.owner
        with self._hooks_lock:  # held while they run: a concurrent waiter returns after them
            hooks, self._finish_hooks = self._finish_hooks, []
            for fn in hooks:
                try:
                    fn(owner)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a hook reports its own errors
                    pass


def state_of(future: Any) -> FutureState:
    """The state object behind a future (for the code that feeds it: SDK, tracker, tests)."""
    return future._fs
