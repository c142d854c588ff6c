"""Calls that queue travel together: each service's pipe of Flame tasks.

A service sends a call as its own Flame task while fewer than :data:`DEPTH` of its tasks are in
flight, so a lone call pays nothing added. Calls made while the pipe is full wait in the kernel
and leave together, as one task (a *batch*), when one of the service's tasks ends: a burst of
2,000 calls costs a few dozen tasks instead of 2,000, while each call keeps its own future,
channel (live output, progress, cancel), error and result. A batch holds about
:data:`BATCH_SECONDS` of measured work (at most :data:`MAX_BATCH` calls; :data:`FIRST_BATCH`
before anything is measured), so calls that take long still go one task each and spread over
instances as before. ``FLAME_JUPYTER_COALESCE=0`` turns this off.

A call is never coalesced when an argument is another call's future or an ObjectRef (flamepy
resolves those per task); such calls go alone, as before.

Example::

    futures = [svc(i) for i in range(2000)]   # the first 8 are tasks, the rest leave in batches
    fj.get(futures)                            # one result per call, errors per call
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flamepy.runner.runner import ObjectFuture as _FlamepyObjectFuture

from flame_jupyter import _flamepy
from flame_jupyter.calls import CallChannel
from flame_jupyter.errors import CancelledError
from flame_jupyter.failure_events import decoder as failure_decoder
from flame_jupyter.failures import decode_failure
from flame_jupyter.future_state import FutureState
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.inline import InlineResult
from flame_jupyter.registry import registry
from flame_jupyter.remote.wire import (
    BATCH_FORMAT,
    CALL_KWARG,
    ENV_KWARG,
    BatchCall,
    BatchItem,
    CallInfo,
    decode_outcome,
)
from flame_jupyter.tracker import tracker

#: Flame tasks of one service in flight before further calls wait in the kernel.
DEPTH = max(1, int(os.environ.get("FLAME_JUPYTER_PIPE_DEPTH", "8")))
#: Seconds of measured work one batch holds at most.
BATCH_SECONDS = 0.05
#: Calls in one batch at most, and before any call's time is known.
MAX_BATCH = 256
FIRST_BATCH = 16


def enabled() -> bool:
    """Whether calls may be coalesced (``FLAME_JUPYTER_COALESCE=0`` turns it off)."""
    return os.environ.get("FLAME_JUPYTER_COALESCE", "1") not in ("0", "false", "no", "off")


def coalescible(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A call may share a task unless flamepy must resolve one of its arguments per task."""
    from flamepy.core import ObjectRef

    return not any(isinstance(v, (_FlamepyObjectFuture, ObjectRef)) for v in (*args, *kwargs.values()))


class Waiting:
    """A call waiting in the kernel for its pipe: what it sends, and the future it feeds."""

    __slots__ = ("target", "args", "kwargs", "env", "call", "inner", "future", "batch_cancel")

    def __init__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: CallInfo) -> None:
        self.target = target  # the flamepy wrapper that sends a task of this service method
        self.args = args
        self.env = kwargs.pop(ENV_KWARG, None)
        self.kwargs = kwargs
        self.call = call
        self.inner: Future[Any] = Future()  # ends when the call's batch result is in
        self.future: Any = None  # the ObjectFuture, set by the caller
        self.batch_cancel: str | None = None  # the batch's cancel key, once sent

    def item(self) -> BatchItem:
        return (self.args, self.kwargs, self.env, self.call)


class CallPipe:
    """One service's tasks in flight, and the calls waiting for room."""

    def __init__(self, session: Any, runner: Any) -> None:
        self._session = session
        self._app = runner.name
        self._cache_endpoint = runner.cache_endpoint
        self._prefix = runner._shared_prefix  # where a coalesced result goes if its ObjectRef is needed
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiting: deque[Waiting] = deque()
        self.per_call: float | None = None  # measured seconds of one call on the executor
        self.batches = 0  # batches sent (for tests and the benchmark notes)

    # -- the kernel side of a call ----------------------------------------------------------------
    def submit(
        self,
        alone: Callable[[], ObjectFuture],
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        label: str,
        service: str,
    ) -> ObjectFuture:
        """Send a call now as its own task (``alone()``), or queue it for the next batch."""
        if not (enabled() and coalescible(args, kwargs)):
            return alone()
        if not self.admit():  # the pipe is full: the call leaves with the next batch
            return self.queue(target, args, kwargs, label=label, service=service)
        try:
            fut = alone()
        except BaseException:
            self._ended()
            raise
        fut.add_done_callback(lambda _f: self._ended())
        return fut

    def admit(self) -> bool:
        """True if a call may go now as its own task (it then counts as in flight)."""
        with self._lock:
            if self._in_flight < DEPTH and not self._waiting:
                self._in_flight += 1
                return True
            return False

    def queue(
        self,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        label: str,
        service: str,
    ) -> ObjectFuture:
        """A call that waits in the kernel for room: its future now, its task with the next batch."""
        session = self._session
        app = self._app
        channel = WaitingChannel(app, session.id, self._cache_endpoint)
        waiting = Waiting(target, args, dict(kwargs), channel.kwarg()[CALL_KWARG])
        channel.pipe, channel.waiting = self, waiting
        fut = ObjectFuture(
            _FlamepyObjectFuture(waiting.inner),
            label=label,
            service=service,
            app=app,
            session_id=session.id,
            state=FutureState(call=channel),
            decode=decode_failure,
        )
        fut.coalesced = True
        waiting.future = fut
        registry.add_future(fut)
        tracker.track(fut, session)
        with self._lock:
            self._waiting.append(waiting)
        self._flush()
        return fut

    def cancel_waiting(self, waiting: Waiting) -> bool:
        """Take a call out of the queue before it leaves: it ends cancelled, nothing is sent."""
        with self._lock:
            try:
                self._waiting.remove(waiting)
            except ValueError:
                return False
        _settle(waiting.inner, exc=CancelledError("cancelled by the user before it was sent"))
        return True

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    # -- batches ----------------------------------------------------------------------------------
    def _batch_size(self, queued: int) -> int:
        cap = FIRST_BATCH if self.per_call is None else int(BATCH_SECONDS / max(self.per_call, 1e-6))
        return max(1, min(MAX_BATCH, cap, math.ceil(queued / DEPTH)))

    def _take(self) -> list[Waiting]:
        """The next batch (same service method, in submission order), counted in flight."""
        with self._lock:
            if self._in_flight >= DEPTH or not self._waiting:
                return []
            while self._waiting and self._waiting[0].inner.done():  # ended while it waited (watchdog)
                self._waiting.popleft()
            if not self._waiting:
                return []
            size = self._batch_size(len(self._waiting))
            first = self._waiting.popleft()
            batch = [first]
            while self._waiting and len(batch) < size and self._waiting[0].target is first.target:
                w = self._waiting.popleft()
                if not w.inner.done():
                    batch.append(w)
            self._in_flight += 1
            return batch

    def _flush(self) -> None:
        for _ in range(DEPTH):  # at most one batch per free place
            batch = self._take()
            if not batch:
                return
            self._send(batch)

    def _send(self, batch: list[Waiting]) -> None:
        header = batch_header(batch)
        try:
            inner = batch[0].target(**{CALL_KWARG: header})
        except Exception as e:  # noqa: BLE001 - e.g. the session closed meanwhile: each call fails
            error = decode_failure(e)  # a lost connection says so
            for w in batch:
                _settle(w.inner, exc=error)
            self._ended()
            return
        task_id = _flamepy.task_id_of(inner)
        for w in batch:
            _flamepy.tag_task(w.inner, task_id)
            if w.future is not None:
                w.future.task_id = task_id
        self.batches += 1
        _flamepy.inner_future(inner).add_done_callback(lambda _f: self._deliver(batch, inner, task_id))

    def _deliver(self, batch: list[Waiting], inner: Any, task_id: str | None) -> None:
        """The batch's task ended: each call's outcome into its own future."""
        try:
            try:
                from flame_jupyter.results import fetch

                outcomes = [decode_outcome(raw) for raw in fetch(inner.ref())]
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"a call batch returned {len(outcomes)} outcomes for {len(batch)} calls"
                    )
            except BaseException as e:  # noqa: BLE001 - the whole task failed: every call fails
                error = failure_decoder(self._session, task_id)(e)
                for w in batch:
                    _settle(w.inner, exc=error)
                return
            seconds = 0.0
            for w, outcome in zip(batch, outcomes, strict=True):
                seconds += outcome.seconds
                if outcome.ok:
                    _settle(w.inner, value=InlineResult(outcome.value, self._prefix))
                else:
                    _settle(w.inner, exc=_FailureText(outcome.value))
            per_call = seconds / len(outcomes)
            self.per_call = per_call if self.per_call is None else (self.per_call + per_call) / 2
        finally:
            self._ended()

    def _ended(self) -> None:
        with self._lock:
            self._in_flight -= 1
        self._flush()


def batch_header(batch: list[Waiting]) -> BatchCall:
    """The :data:`CALL_KWARG` value that sends ``batch`` as one task (its cancel key: the first
    call's, suffixed)."""
    cancel = batch[0].call["cancel"] + "-batch"
    for w in batch:
        w.batch_cancel = cancel
    return {"format": BATCH_FORMAT, "batch": [w.item() for w in batch], "cancel": cancel}


class _FailureText(Exception):
    """A coalesced call's failure text, in the shape ``decode_failure`` reads."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.message = text


def _settle(inner: Future[Any], *, value: Any = None, exc: BaseException | None = None) -> None:
    if inner.done():
        return
    try:
        if exc is not None:
            inner.set_exception(exc)
        else:
            inner.set_result(value)
    except Exception:  # noqa: BLE001 - InvalidStateError: settled meanwhile (a watchdog failure)
        pass


class WaitingChannel(CallChannel):
    """The channel of a call that may still wait in the kernel: a cancel then just unqueues it."""

    pipe: CallPipe | None = None
    waiting: Waiting | None = None

    def request_cancel(self, grace: float | None = None) -> None:
        pipe, waiting = self.pipe, self.waiting
        if pipe is not None and waiting is not None and pipe.cancel_waiting(waiting):
            return
        first = self.cancel_sent_at is None
        super().request_cancel(grace)
        if first and waiting is not None and waiting.batch_cancel is not None:
            from flamepy.core import ObjectRef, update_object

            # after the call's own key: the batch then tells its items to read theirs
            update_object(
                ObjectRef(endpoint=self.cache_endpoint, key=waiting.batch_cancel, version=0), {"cancel": True}
            )
