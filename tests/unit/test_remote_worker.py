"""remote/worker.py with real threads: interrupts, abandoned calls stuck in C, the bound on them."""

from __future__ import annotations

import threading
import time

import pytest

from flame_jupyter.remote import worker
from flame_jupyter.remote.channel import Cancelled
from tests.polling import wait_for


def _stuck(seconds: float, seen: list[int]) -> None:
    seen.append(threading.get_ident())
    time.sleep(seconds)  # one C call: an async exception waits until it returns
    seen.append(-1)  # never reached: the pending interrupt fires first


def test_interrupt_stops_python_code_and_the_worker_serves_on() -> None:
    def spin() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pass

    job = worker.Job(spin)
    t = threading.Thread(target=worker.run_on_worker, args=(job,))
    t.start()
    wait_for(lambda: job.running, 10, "the job to run", interval=0.01)
    assert worker.interrupt(job, Cancelled)
    t.join(5)
    assert not t.is_alive() and isinstance(job.error, Cancelled) and not job.abandoned
    again = worker.Job(lambda: threading.get_ident())
    worker.run_on_worker(again)
    assert again.error is None and again.value == job.thread_id  # the same persistent worker
    assert not worker.interrupt(again, Cancelled)  # ended: nothing to interrupt


def test_code_stuck_in_c_is_abandoned_and_bounded() -> None:
    seen: list[int] = []
    jobs = []
    try:
        for _ in range(worker.MAX_ABANDONED):
            job = worker.Job(lambda: _stuck(1.5, seen))
            t = threading.Thread(target=worker.run_on_worker, args=(job,))
            t.start()
            wait_for(lambda j=job: j.running, 10, "the job to run", interval=0.01)  # type: ignore[misc]
            assert worker.interrupt(job, Cancelled)
            assert worker.abandon(job, f"stuck-{len(jobs)}")
            t.join(2)
            assert not t.is_alive() and job.abandoned and job.value is None and job.error is None
            jobs.append(job)
        assert len({j.thread_id for j in jobs}) == worker.MAX_ABANDONED  # each on its own worker
        refused = worker.Job(lambda: 1)
        with pytest.raises(RuntimeError, match="stuck-0.*stuck-3"):
            worker.run_on_worker(refused)
        assert not refused.running
    finally:
        stuck = worker._rt().abandoned_threads  # type: ignore[attr-defined]
        wait_for(lambda: not stuck, 10, "the stuck calls to return", interval=0.01)  # and their threads ended
    assert -1 not in seen  # the pending interrupt stopped each one as its C call returned
    after = worker.Job(lambda: 7)
    worker.run_on_worker(after)  # slots free again: calls run
    assert after.value == 7 and after.error is None
