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

import time
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import suppress
from typing import Any

from flamepy.runner.runner import ObjectFuture as _FlamepyObjectFuture

from flame_jupyter import _flamepy, watchdog
from flame_jupyter.errors import FlameJupyterError
from flame_jupyter.failures import decode_failure
from flame_jupyter.future_state import FutureState
from flame_jupyter.gather import as_completed, get, ref, select, wait  # re-exported
from flame_jupyter.inline import inline_of
from flame_jupyter.remote.wire import State
from flame_jupyter.result_release import mark_shared

REFRESH_EVERY = 0.2  # seconds between Flame checks when an unshown future's state is read


class ObjectFuture(_FlamepyObjectFuture):
    """The result of a remote call: a flamepy ObjectFuture plus state, timings, output and display.

    Read-only for its user: what it reports is kept by its :class:`FutureState`, which only the
    code feeding the call (SDK, tracker, call channel) changes.
    """

    def __init__(
        self,
        inner: _FlamepyObjectFuture,
        *,
        label: str = "",
        service: str = "",
        app: str = "",
        session_id: str = "",
        state: FutureState | None = None,
        decode: Callable[[BaseException], BaseException] | None = None,
    ) -> None:
        super().__init__(_flamepy.inner_future(inner))
        self._decode = decode or decode_failure  # flamepy's error -> the user's exception
        self.label = label
        self.service = service
        self.app = app
        self.session_id = session_id
        self.task_id: str | None = _flamepy.task_id_of(inner)
        self._fs = state if state is not None else FutureState()
        self._fs.owner = self
        self._result_loaded = False
        self._result: Any = None
        self.coalesced = False  # True: it travels in a batch with other calls (flame_jupyter.pipes)
        self._future.add_done_callback(self._on_done)

    # -- state -------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """queued, running, done, failed or cancelled. A shown future is kept current by the
        tracker; reading it on one nobody shows asks Flame (at most every 0.2 s)."""
        if not self.done():
            self._fs.refresh(REFRESH_EVERY)
        elif not self._fs.state.terminal:  # finished, its done callback still decoding: finish now
            self._on_done(None)
        return self._fs.state.value

    @property
    def known_state(self) -> str:
        """The state as last seen, without asking Flame (for views and bookkeeping)."""
        return self._fs.state.value

    @property
    def submitted_at(self) -> float:
        """When the call was submitted (``time.time()``)."""
        return self._fs.submitted_at

    @property
    def started_at(self) -> float | None:
        """When it was seen running, if it was."""
        return self._fs.started_at

    @property
    def finished_at(self) -> float | None:
        """When it finished, once it has."""
        return self._fs.finished_at

    @property
    def elapsed(self) -> float:
        """Seconds since submission (until the end, once finished)."""
        fs = self._fs
        end = fs.finished_at if fs.finished_at is not None else time.time()
        return max(0.0, end - fs.submitted_at)

    @property
    def run_time(self) -> float | None:
        """Seconds it ran on the executor, when known."""
        fs = self._fs
        if fs.started_at is None:
            return None
        end = fs.finished_at if fs.finished_at is not None else time.time()
        return max(0.0, end - fs.started_at)

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self.state == State.CANCELLED

    def _on_done(self, _fut: Any) -> None:
        try:
            exc = self._future.exception()
        except FutureCancelled as e:
            exc = e
        self._fs.finish(exc, self._decode)
        self._fs.run_finish_hooks()

    # -- results -----------------------------------------------------------------------------------
    def result(self, timeout: float | None = None) -> Any:
        """Alias of :meth:`get` (concurrent.futures naming)."""
        __tracebackhide__ = True
        return self.get(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Wait for the result and fetch it from the object cache.

        Raises the remote exception (type preserved where possible, with the remote traceback),
        :class:`~flame_jupyter.errors.CancelledError` if cancelled, or ``TimeoutError``.
        A ``KeyboardInterrupt`` while waiting cancels the remote work, then propagates.
        """
        __tracebackhide__ = True  # IPython shows the user's frames, not these
        self._wait_or_cancel(timeout)
        if self._fs.error is not None:
            raise self._fs.error
        if not self._result_loaded:
            inline = inline_of(self._future)
            if inline is not None:  # it came back inside its batch's result
                self._result = inline.value
            else:
                from flame_jupyter.results import fetch

                self._result = fetch(super().ref(), owner=self)
            self._result_loaded = True
            from flame_jupyter.display.figures import adopt_figures

            adopt_figures(self._result)  # a figure renders once, as this value
        return self._result

    def ref(self) -> Any:
        """The ObjectRef of the result (no download)."""
        __tracebackhide__ = True
        mark_shared(self)  # whoever holds the ref may read the result's objects
        self._wait_or_cancel(None)
        if self._fs.error is not None:
            raise self._fs.error
        inline = inline_of(self._future)
        return inline.ref() if inline is not None else super().ref()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until finished; True if it finished (successfully or not). Like ``get()``, it
        looks at Flame between slices (a call that can never start ends ``failed``)."""
        try:
            watchdog.wait(self, timeout)
        except FutureTimeout:
            return False
        except FutureCancelled:
            pass
        self._settle()
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        __tracebackhide__ = True
        self._wait_or_cancel(timeout)
        return self._fs.error

    def _wait_or_cancel(self, timeout: float | None) -> None:
        __tracebackhide__ = True
        try:
            watchdog.wait(self, timeout)  # in slices: looks at Flame (answering? bindable?) between
        except FutureTimeout:
            raise TimeoutError(f"{self._describe()} did not finish within {timeout} s") from None
        except KeyboardInterrupt:
            self.cancel()
            raise
        self._settle()

    def _settle(self) -> None:
        """After the inner future finished: the state, the finish hooks and (for a future
        someone shows) the last streamed records are complete before get()/wait() return."""
        from flame_jupyter.calls import drain

        if not self._fs.state.terminal:  # the done callback may still be running
            self._on_done(None)
        self._fs.run_finish_hooks()
        drain(self._fs, only_if_observed=True)

    def __await__(self) -> Any:
        """``await future``: the future, done, ``get()`` instant (RFE280: ``res = await svc(1, 2);
        res.get()``); raises the remote error like ``get()``. Cancelling the awaiting task
        (``asyncio.wait_for`` timing out) cancels the remote work."""
        return self._awaited().__await__()

    async def _awaited(self) -> ObjectFuture:
        import asyncio

        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def settled(_f: Any) -> None:
            with suppress(RuntimeError):  # the loop was closed meanwhile: nobody awaits any more
                loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))

        self._future.add_done_callback(settled)  # not wrap_future: its cancel would reach flamepy's future
        try:
            await waiter
        except asyncio.CancelledError:
            self.cancel()
            raise
        self._settle()
        if self._fs.error is not None:
            raise self._fs.error
        await asyncio.to_thread(self.get)  # fetched here, off the loop: get() is then instant
        return self

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask for the remote work to stop. Returns False if it had already finished."""
        if self.done():
            return False
        self._fs.request_cancel()
        return True

    @property
    def waiting_for(self) -> str | None:
        """What a queued call waits for (an instance to start, the calls ahead), else None.
        Read on a future nobody shows, it asks Flame (at most every 0.2 s)."""
        if not self.done():
            self._fs.refresh(REFRESH_EVERY)
        return self.known_waiting

    @property
    def known_waiting(self) -> str | None:
        """:attr:`waiting_for` as last seen, without asking Flame (for views)."""
        return self._fs.waiting if self._fs.state == State.QUEUED else None

    @property
    def cancel_requested(self) -> bool:
        """True once :meth:`cancel` asked the remote work to stop."""
        return self._fs.cancel_requested

    # -- listeners (views) -------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[ObjectFuture], None], *, shows_output: bool = True) -> None:
        """Call ``fn(future)`` on every change. Pass ``shows_output=False`` for bookkeeping
        (state counts): only listeners that show output make the last output read eager."""
        self._fs.add_listener(fn, shows_output)
        if self.done():
            fn(self)

    def remove_listener(self, fn: Callable[[ObjectFuture], None]) -> None:
        self._fs.remove_listener(fn)

    def add_done_callback(self, fn: Callable[[ObjectFuture], None]) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    # -- what the remote code streamed (complete once the future is done) --------------------------
    def _read_output_on_access(self) -> None:
        # A shown future is kept current by the tracker and get()/wait(), so its views never
        # block here; one nobody shows reads its stream when asked (while running, at most
        # every 0.2 s; once done, the last records once).
        if self.done():
            if not self._fs.state.terminal:  # the done callback may still be running
                self._on_done(None)
            if not self._fs.streams_closed and not self._fs.has_viewer():
                from flame_jupyter.calls import drain

                drain(self._fs)
        else:
            self._fs.refresh(REFRESH_EVERY)

    @property
    def output(self) -> list[tuple[str, str]]:
        """``(stream, text)`` pairs printed remotely, in arrival order: the last
        ``FLAME_JUPYTER_OUTPUT_LIMIT`` characters (32 MiB; :attr:`output_dropped` counts the rest)."""
        self._read_output_on_access()
        return self._fs.output

    @property
    def output_dropped(self) -> int:
        """Characters printed before those :attr:`output` keeps (its bound: ``FLAME_JUPYTER_OUTPUT_LIMIT``)."""
        return self._fs.output_dropped

    @property
    def text(self) -> str:
        """The printed output as one text, ``\\r`` applied (a tqdm bar is its last state)."""
        from flame_jupyter.display.terminal import apply_cr

        return apply_cr("".join(text for _, text in self.output))

    @property
    def displays(self) -> list[dict[str, Any]]:
        """Rich display bundles the remote code showed with ``display()``."""
        self._read_output_on_access()
        return self._fs.displays

    @property
    def progress(self) -> tuple[float, float, str] | None:
        """The last ``flame_jupyter.progress(done, total, message)`` report."""
        self._read_output_on_access()
        return self._fs.progress

    @property
    def preview(self) -> dict[str, Any] | None:
        """The result's small rich repr, made remotely (results too large to fetch eagerly)."""
        self._read_output_on_access()
        return self._fs.preview

    @property
    def streams_closed(self) -> bool:
        """True once nothing more can stream in (the call ended and its last records were read,
        or the call has no stream)."""
        return self._fs.call is None or self._fs.streams_closed

    @property
    def result_loaded(self) -> bool:
        """True once the result has been fetched (``get()`` is then instant)."""
        return self._result_loaded

    @property
    def result_inline(self) -> bool:
        """True if the result came back inside its batch's result (it has no cache object yet)."""
        return inline_of(self._future) is not None

    @property
    def loaded_result(self) -> Any:
        """The result if :meth:`get` already fetched it, else None (never blocks or downloads)."""
        return self._result if self._result_loaded else None

    @property
    def error(self) -> BaseException | None:
        """The failure, once failed or cancelled (never waits for the call)."""
        if self.done() and not self._fs.state.terminal:
            self._on_done(None)
        return self._fs.error

    # -- display -----------------------------------------------------------------------------------
    def _describe(self) -> str:
        what = self.label or self.service or "call"
        return f"{what} (task {self.task_id} of session {self.session_id})"

    def __repr__(self) -> str:
        return f"<ObjectFuture {self.label or self.service!r} {self.state} {self.elapsed:.1f}s task={self.task_id} session={self.session_id}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from flame_jupyter.views import future_mimebundle

        return future_mimebundle(self)


__all__ = ["ObjectFuture", "State", "get", "ref", "wait", "select", "as_completed", "FlameJupyterError"]
