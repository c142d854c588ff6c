"""ItemFuture: one item of a map (``group[i]``), usable wherever an ObjectFuture is.

It is a ``flamepy.runner.ObjectFuture`` (a subclass), so passing it into another service call
passes its ObjectRef (flamepy calls :meth:`ItemFuture.ref`). Its value lives in its chunk's
result (fetched once per chunk by the map's driver); ``ref()`` stores the value in the object
cache on first use, under the Runner's shared prefix (removed when the Runner closes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flamepy.runner.runner import ObjectFuture as _FlamepyObjectFuture

from flame_jupyter.remote.wire import State, decode_record


class ItemFuture(_FlamepyObjectFuture):
    """The future of item ``index`` of a map."""

    def __init__(self, group: Any, index: int, chunk: Any) -> None:
        # No flamepy future per item (10,000 items would cost 10,000 of them): ``_future`` is
        # made on first use; completion is the chunk's event.
        self._group = group
        self.index = index
        self._chunk = chunk
        self._value: Any = None
        self._error: BaseException | None = None
        self._state = State.QUEUED
        self._ref: Any = None
        self._records_raw: list[tuple[Any, ...]] = []
        self.finished_at: float | None = None

    @property
    def label(self) -> str:
        return f"{self._group.label}[{self.index}]"

    @property
    def service(self) -> str:
        return self._group.service

    @property
    def session_id(self) -> str:
        return self._group.session_id

    @property
    def _future(self) -> Future[Any]:  # type: ignore[override]
        """A ``concurrent.futures.Future`` that ends with the item (``fj.wait``, flamepy's helpers)."""
        with self._chunk.lock:
            cf = self.__dict__.get("_cf")
            if cf is None:
                cf = self.__dict__["_cf"] = Future()
                if self._state.terminal:
                    _settle(cf, self._error)
            return cf

    # -- fed by the map's driver -------------------------------------------------------------------
    def _finish(self, value: Any, error: BaseException | None, records: list[tuple[Any, ...]]) -> None:
        from flame_jupyter.errors import CancelledError

        with self._chunk.lock:
            if self._state.terminal:
                return
            self._value, self._error, self._records_raw = value, error, records
            self.finished_at = time.time()
            if error is None:
                self._state = State.DONE
            else:
                self._state = State.CANCELLED if isinstance(error, CancelledError) else State.FAILED
            cf = self.__dict__.get("_cf")
        if cf is not None:
            _settle(cf, error)

    def _records(self, kind: str) -> list[Any]:
        return [
            r for r in (decode_record(raw) for raw in self._records_raw) if r is not None and r[0] in kind
        ]

    @property
    def output(self) -> list[tuple[str, str]]:
        """``(stream, text)`` pairs the item printed (complete once it finished)."""
        return [(r[0], r[1]) for r in self._records(("stdout", "stderr"))]

    @property
    def progress(self) -> tuple[float, float, str] | None:
        found = self._records(("progress",))
        return None if not found else (found[-1][1], found[-1][2] or 0.0, found[-1][3])

    @property
    def displays(self) -> list[dict[str, Any]]:
        return [r[1] for r in self._records(("display",))]

    # -- state ---------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """queued, running, done, failed or cancelled (running: its chunk runs)."""
        if self._state == State.QUEUED and self._chunk.running:
            return State.RUNNING.value
        return self._state.value

    known_state = state

    @property
    def task_id(self) -> str | None:
        """The Flame task of the chunk this item runs in."""
        future = self._chunk.future
        return None if future is None else future.task_id

    @property
    def error(self) -> BaseException | None:
        return self._error

    def done(self) -> bool:
        return self._state.terminal

    def cancelled(self) -> bool:
        return self._state == State.CANCELLED

    def cancel(self) -> bool:
        """Cancel the chunk this item runs in (its other items are cancelled with it)."""
        if self.done() or self._chunk.future is None:
            return False
        return bool(self._chunk.future.cancel())

    # -- results -------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until the item finished; True if it did in time."""
        return self._state.terminal or self._chunk.ended.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The item's result (raises its exception)."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value

    result = get

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label} did not finish within {timeout} s")
        return self._error

    def ref(self) -> Any:
        """The ObjectRef of the result (put into the object cache once; no download)."""
        value = self.get()
        if self._ref is None:
            from flamepy.core import put_object

            runner = self._group._service._runner
            self._ref = put_object(getattr(runner, "_shared_prefix", f"{runner.name}/shared"), value)
        return self._ref

    def add_done_callback(self, fn: Callable[[ItemFuture], None]) -> None:
        """Call ``fn(item)`` once it finished (now, if it has)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Any:
        import asyncio

        async def _done() -> ItemFuture:
            await asyncio.to_thread(self.wait, None)
            return self

        return _done().__await__()

    def __repr__(self) -> str:
        return f"<ItemFuture {self.label!r} {self.state} task={self.task_id} session={self.session_id}>"


def _settle(cf: Future[Any], error: BaseException | None) -> None:
    if cf.done():
        return
    if error is None:
        cf.set_result(None)
    else:
        cf.set_exception(error)
