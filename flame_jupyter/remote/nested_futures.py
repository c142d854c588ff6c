"""Nested calls' futures on the executor: one Flame task each, watched with WatchTask.

:class:`NestedFuture` is what a call from remote code returns (and what a kernel future
captured into remote code becomes); :class:`NestedValues` a finished map's results. Waiting is
an open ``WatchTask`` stream (so the runtime sees that the instance waits); inner calls are
cancelled with the outer call (:func:`track`); output can be forwarded (:func:`forward`).
See :mod:`.nested` for the services that make them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from .channel import RemoteAPI, _current
from .runtime import _rt
from .wire import (
    CANCELLED_MODULE,
    CANCELLED_NAME,
    Display,
    FlameEndpoints,
    FutureRef,
    Output,
    Progress,
    ValuesRef,
    decode_failure,
    decode_record,
    loads_by_name,
)

WAIT_SLICE = 0.1  # waits return to Python this often (so a cancel can interrupt them)
FORWARD_EVERY = 0.2  # forwarded output is read this often
CANCEL_WATCH_EVERY = 0.1

_FAILED = 3  # flamepy TaskState.FAILED (also the code of Flame's failure event)


class RemoteCallError(Exception):
    """A nested call failed and its exception could not be rebuilt here."""


class CancelledError(Exception):
    """A nested call was cancelled."""


# --------------------------------------------------------------------------- flamepy


def connect(ends: FlameEndpoints) -> None:
    """Point flamepy at the kernel's Flame unless this executor has its own setting."""
    rt = _rt()
    with rt.lock:
        if getattr(rt, "nested_connected", False):
            return
        if not os.environ.get("FLAME_ENDPOINT"):
            os.environ["FLAME_ENDPOINT"] = ends["endpoint"]
            if not os.environ.get("FLAME_CACHE_ENDPOINT"):
                os.environ["FLAME_CACHE_ENDPOINT"] = ends["cache_endpoint"]
        rt.nested_connected = True


def session(session_id: str) -> Any:
    """The flamepy session ``session_id`` (opened once per process)."""
    rt = _rt()
    with rt.lock:
        sessions = rt.__dict__.setdefault("nested_sessions", {})
        found = sessions.get(session_id)
    if found is None:
        from flamepy.core import open_session

        found = open_session(session_id)
        with rt.lock:
            sessions[session_id] = found
    return found


def _cache_endpoint() -> str:
    from flamepy.core.types import FlameContext

    return FlameContext().cache.endpoint


def _object_ref(data: Any) -> Any:
    from flamepy.core import ObjectRef

    return data if isinstance(data, ObjectRef) else ObjectRef.decode(data)


def _failure(text: str, label: str) -> BaseException:
    """The exception a nested call failed with, rebuilt from its failure text where possible."""
    rec = decode_failure(text)
    if rec is None:
        return RemoteCallError(f"{label} failed: {text}")
    if rec.get("module") == CANCELLED_MODULE and rec.get("type") == CANCELLED_NAME:
        return CancelledError(f"{label} was cancelled")
    exc: Any = None
    if rec.get("pickle"):
        try:
            exc = loads_by_name(rec["pickle"])  # type: ignore[typeddict-item]
        except Exception:  # noqa: BLE001 - a type this process cannot import
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteCallError(f"{rec.get('type')}: {rec.get('message')}")
    if rec.get("traceback") and hasattr(exc, "add_note"):
        exc.add_note(f"remote traceback of {label}:\n{rec['traceback']}")
    return exc


# --------------------------------------------------------------------------- futures


class NestedFuture:
    """A call made from remote code (or a kernel future captured into it): one Flame task.

    ``get()`` fetches the result (raising the call's exception), ``ref()`` is its ObjectRef
    (no download; pass it or the future itself to another call), ``wait()``, ``done()``,
    ``cancel()``.
    """

    def __init__(
        self,
        ends: FlameEndpoints,
        label: str,
        session: str | None,
        task: str | None,
        *,
        ref: Any = None,
        cancel_key: str | None = None,
    ) -> None:
        connect(ends)
        self._ends = ends
        self.label = label
        self.session_id = session
        self.task_id = task
        self._ref = None if ref is None else _object_ref(ref)
        self._cancel_key = cancel_key
        self._error: BaseException | None = None
        self._value: Any = None
        self._loaded = False
        self._ended = threading.Event()
        if self._ref is not None or task is None:
            self._ended.set()
        self._watching = False
        self._lock = threading.Lock()
        self.cancel_requested = False

    # -- state -----------------------------------------------------------------------------------
    def _finish(self, task: Any) -> None:
        """Record a finished task (first writer wins)."""
        if self._ended.is_set():
            return
        if int(task.state) == _FAILED:
            text = ""
            try:
                full = session(self.session_id).get_task(self.task_id)  # WatchTask has no events
                text = next((e.message for e in reversed(full.events or []) if int(e.code) == _FAILED), "")
            except Exception:  # noqa: BLE001 - the failure is reported without its text then
                pass
            self._error = _failure(text or "the task failed without a message", self.label)
        else:
            output = task.output
            if output is None:
                output = session(self.session_id).get_task(self.task_id).output
            self._ref = _object_ref(output)
        self._ended.set()

    def _watch(self) -> None:
        """Follow the task with WatchTask until it ends (GetTask polls if the stream breaks)."""
        try:
            for task in session(self.session_id).watch_task(self.task_id):
                if task.is_completed():
                    self._finish(task)
                    return
        except Exception:  # noqa: BLE001 - fall back to polling below
            pass
        while not self._ended.is_set():
            try:
                task = session(self.session_id).get_task(self.task_id)
                if task.is_completed():
                    self._finish(task)
                    return
            except Exception as exc:  # noqa: BLE001 - Flame unreachable: report it as the failure
                self._error = RemoteCallError(f"{self.label}: cannot follow task {self.task_id}: {exc}")
                self._ended.set()
                return
            time.sleep(WAIT_SLICE * 2)

    def _start_watch(self) -> None:
        with self._lock:
            if self._watching or self._ended.is_set():
                return
            self._watching = True
        threading.Thread(target=self._watch, name="flame-jupyter-nested-watch", daemon=True).start()

    def done(self) -> bool:
        """True once the call finished (one GetTask if not known yet; never waits)."""
        if not self._ended.is_set() and self.task_id is not None:
            try:
                task = session(self.session_id).get_task(self.task_id)
            except Exception:  # noqa: BLE001 - not known to be done
                return False
            if task.is_completed():
                self._finish(task)
        return self._ended.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (on an open WatchTask stream) until finished; True if it finished in time."""
        self._start_watch()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended.wait(WAIT_SLICE):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def ref(self, timeout: float | None = None) -> Any:
        """The ObjectRef of the result (waits; raises the call's exception; no download)."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._ref

    def get(self, timeout: float | None = None) -> Any:
        """The result (waits; raises the call's exception)."""
        ref = self.ref(timeout)
        if not self._loaded:
            from flamepy.core import get_object

            self._value = get_object(ref)
            self._loaded = True
        return self._value

    result = get

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label} did not finish within {timeout} s")
        return self._error

    def cancel(self) -> bool:
        """Ask the call to stop (its executor interrupts it); False if it already finished."""
        if self._ended.is_set() or self._cancel_key is None:
            return False
        if not self.cancel_requested:
            from flamepy.core import ObjectRef, update_object

            self.cancel_requested = True
            update_object(
                ObjectRef(endpoint=_cache_endpoint(), key=self._cancel_key, version=0), {"cancel": True}
            )
        return True

    def _state(self) -> FutureRef:
        return {
            "format": 1,
            "label": self.label,
            "session": self.session_id,
            "task": self.task_id,
            "ref": None if self._ref is None else self._ref.encode(),
            "cancel": self._cancel_key,
            "endpoint": self._ends["endpoint"],
            "cache_endpoint": self._ends["cache_endpoint"],
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteAPI("future_ref"), (self._state(),))

    def __repr__(self) -> str:
        state = "pending" if not self._ended.is_set() else ("failed" if self._error else "done")
        return f"<flame_jupyter nested call {self.label} task={self.task_id} {state}>"


class NestedValues(NestedFuture):
    """A finished map captured into remote code: a list of results, fetched on first use."""

    def __init__(self, ends: FlameEndpoints, label: str, ref: Any, count: int) -> None:
        super().__init__(ends, label, None, None, ref=ref)
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self.get()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get())

    def __reduce__(self) -> tuple[Any, ...]:
        state: ValuesRef = {
            "format": 1,
            "label": self.label,
            "ref": self._ref.encode(),
            "count": self._count,
            "endpoint": self._ends["endpoint"],
            "cache_endpoint": self._ends["cache_endpoint"],
        }
        return (RemoteAPI("values_ref"), (state,))


# --------------------------------------------------------------------------- cancel with the outer call


def track(fut: NestedFuture) -> None:
    """Remember ``fut`` under the call running now, so that call's cancel cancels it too."""
    channel = _current()
    if channel is None:
        return
    rt = _rt()
    with rt.lock:
        calls = rt.__dict__.setdefault("nested_calls", {})
        calls.setdefault(id(channel), (channel, []))[1].append(fut)
        if not getattr(rt, "nested_watcher", False):
            rt.nested_watcher = True
            threading.Thread(target=_watch_cancels, name="flame-jupyter-nested-cancel", daemon=True).start()


def _watch_cancels() -> None:
    """Cancel the inner calls of an outer call whose cancel arrived; forget calls that ended."""
    rt = _rt()
    while True:
        time.sleep(CANCEL_WATCH_EVERY)
        with rt.lock:
            calls = rt.__dict__.get("nested_calls", {})
            entries = list(calls.items())
        for key, (channel, futs) in entries:
            if channel.cancelled:
                for fut in futs:
                    try:
                        fut.cancel()
                    except Exception:  # noqa: BLE001 - the others still get their cancel
                        pass
            elif not channel.done.is_set():
                with rt.lock:
                    futs[:] = [f for f in futs if not f._ended.is_set()]
                continue
            with rt.lock:
                calls.pop(key, None)


# --------------------------------------------------------------------------- output forwarding


def forward(fut: NestedFuture, stream_key: str, outer: Any) -> None:
    """Copy the inner call's output, progress and displays into ``outer`` until it ends."""
    from flamepy.core import ObjectRef, get_object

    seen = 0
    endpoint = _cache_endpoint()
    while True:
        ended = fut._ended.wait(FORWARD_EVERY)
        try:
            _, patches = get_object(
                ObjectRef(endpoint=endpoint, key=stream_key, version=1),
                deserializer=lambda base, deltas: (base, deltas),
            )
            records = [r for batch in patches for r in (batch or [])]
        except Exception:  # noqa: BLE001 - nothing written yet
            records = []
        for raw in records[seen:]:
            rec = decode_record(raw)
            if isinstance(rec, (Output, Progress, Display)):
                outer.add(rec)
        seen = max(seen, len(records))
        if ended or outer.done.is_set():
            return
