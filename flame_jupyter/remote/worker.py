"""The thread that runs a call's code, so the thread serving the task can always answer.

Each call's code runs on the process's one persistent worker thread (handed over through a
queue: a few microseconds); flamepy's serving thread waits for it. A cancel interrupts the
worker with an async exception (:func:`interrupt`). Code stuck in C past the grace is
*abandoned* (:func:`abandon`): the serving thread answers at once, a new worker serves the next
call, and what the stuck one does later is discarded (its result, its output: see
:func:`is_abandoned`). The process never ends because of a cancel (on Flame v0.6.0 an instance
that dies wedges its executor). At most :data:`MAX_ABANDONED` stuck workers live at once; past
that a new call is refused with an error naming the stuck calls.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any

from .runtime import _rt

MAX_ABANDONED = 4


class Job:
    """One call's code on a worker: its outcome, and whether it was interrupted or abandoned."""

    __slots__ = (
        "fn",
        "label",
        "reply",
        "value",
        "error",
        "thread_id",
        "running",
        "ended",
        "interrupted",
        "abandoned",
    )

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] | None = fn
        self.label = ""  # the call, as the refusal of later calls names it (set when abandoned)
        self.reply = threading.Lock()
        self.reply.acquire()  # released once: by the worker when the code ends, or by abandon()
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread_id = 0
        self.running = False  # set by the worker as the code starts: interrupts need it
        self.ended = False
        self.interrupted = False
        self.abandoned = False


class _Worker:
    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.job: Job | None = None
        self.thread = threading.Thread(target=self._serve, name="flame-jupyter-worker", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            job = self.inbox.get()
            try:
                try:
                    job.running = True
                    job.value = job.fn()  # type: ignore[misc]
                except BaseException as exc:  # noqa: BLE001 - handed to the serving thread
                    job.error = exc
            except BaseException as exc:  # noqa: BLE001 - a late interrupt landing in the handler
                job.error = exc
            job.fn = None  # the call's arguments are not kept alive
            while True:
                try:
                    if _settle(job):
                        return  # abandoned: this thread is done; a new worker serves the next call
                    break
                except BaseException:  # noqa: BLE001 - a late interrupt landing here: settle again
                    continue


def _state() -> Any:
    rt = _rt()
    state = getattr(rt, "worker_state", None)
    if state is None:
        with rt.lock:
            state = rt.__dict__.setdefault("worker_state", {"lock": threading.Lock(), "worker": None})
            rt.__dict__.setdefault("abandoned_threads", {})  # thread id -> the stuck call's label
    return state


def _settle(job: Job) -> bool:
    """The worker ends ``job`` (True: it had been abandoned, so its outcome is dropped)."""
    with _state()["lock"]:
        if job.interrupted:  # an interrupt not yet delivered must not hit the next call
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(job.thread_id), None)
        if not job.ended:
            job.ended = True
            if job.abandoned:
                job.value = job.error = None
                _rt().abandoned_threads.pop(job.thread_id, None)
                return True
            job.reply.release()
        return False


def run_on_worker(job: Job) -> None:
    """Run ``job`` on the worker and wait until it ends or is abandoned (``job.abandoned``)."""
    state = _state()
    with state["lock"]:
        worker = state["worker"]
        if worker is None:
            stuck = _rt().abandoned_threads
            if len(stuck) >= MAX_ABANDONED:
                raise RuntimeError(
                    f"flame_jupyter: this instance refuses new calls: {len(stuck)} cancelled calls are "
                    f"still stuck in C code ({', '.join(sorted(stuck.values()))}) and ignore the cancel; "
                    "close the service (or wait for them to return) to go on"
                )
            worker = state["worker"] = _Worker()
        worker.job = job
        job.thread_id = worker.thread.ident or 0
    worker.inbox.put(job)
    job.reply.acquire()
    return job


def interrupt(job: Job, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in ``job``'s code (at its next bytecode); False when it already ended."""
    with _state()["lock"]:
        if job.ended or job.abandoned or not job.running:
            return False
        job.interrupted = True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(job.thread_id), ctypes.py_object(exc_type))
        return True


def abandon(job: Job, label: str) -> bool:
    """Give up on ``job`` (stuck in C): its serving thread returns now; False when it ended."""
    state = _state()
    with state["lock"]:
        if job.ended or job.abandoned:
            return False
        job.abandoned = True
        job.label = label
        worker = state["worker"]
        if worker is not None and worker.job is job:
            state["worker"] = None
        _rt().abandoned_threads[job.thread_id] = job.label
    job.reply.release()  # a live instance's object stays: the stuck code may still change it
    return True


def is_abandoned() -> bool:
    """True on the thread of an abandoned call (what it prints or reports is dropped)."""
    stuck = getattr(_rt(), "abandoned_threads", None)
    return bool(stuck) and threading.get_ident() in stuck
