"""Slot lending on a 2-slot runtime: a task that waits on other tasks gives its slot back.

A recursion deeper than the slots in one session (Flame's e2e ``test_runner_recursive_same_session``
with depth 3) and four tasks that each fan out to two inner tasks complete on ``max_instances=2``,
with unmodified flamepy; the inner tasks never run more than two at a time (busy instances stay
within the slots) and the instance processes stay within ``max_processes``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import conf_lending_svc as svc
import flamepy
import pytest
from conf_support import HERE, uid
from flamepy.runner import Runner, SessionContext

from tests.conftest import point_flamepy_at


def point_at(rt) -> None:  # noqa: ANN001 - a LocalRuntime
    """Point flamepy (its connection and its cached cache context) at ``rt``."""
    import flamepy.core.cache as flamepy_cache

    point_flamepy_at(rt.endpoint, rt.cache_endpoint)
    flamepy_cache._context_cache = None


SLOTS = 2


@pytest.fixture(scope="module")
def two_slots(runtime) -> Iterator:
    """A runtime of its own with 2 slots (the session runtime has 4); flamepy points back after."""
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=SLOTS, shutdown_grace=2.0).start()
    point_at(rt)
    try:
        yield rt
    finally:
        point_at(runtime)
        rt.stop()


@pytest.fixture
def project(two_slots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(HERE / "conf_lending_svc.py", root / "conf_lending_svc.py")
    monkeypatch.chdir(root)
    return root


def bounded_get(future, timeout: float = 90.0):  # noqa: ANN001, ANN201 - a flamepy ObjectFuture
    """``future.get()``, failing (instead of hanging) after ``timeout`` s: a deadlock is a failure."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = future.get()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"no result within {timeout:.0f} s: the nested work deadlocked on the slots")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


class ProcessHigh:
    """Samples the runtime's live instance count in a thread (bounded by ``limit_s``)."""

    def __init__(self, rt, limit_s: float = 120.0) -> None:
        self.rt, self.high, self._stop = rt, 0, threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            self.high = max(self.high, len(self.rt.manager.instances()))
            time.sleep(0.02)

    def __enter__(self) -> ProcessHigh:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_recursion_deeper_than_the_slots_in_one_session_completes(two_slots, project: Path) -> None:
    name = uid("lend-rec")
    sid = f"{name}-ssn"

    class Recursive(svc.Deep):
        _session_context = SessionContext(session_id=sid, application_name=name)

    with Runner(name) as rr, ProcessHigh(two_slots) as seen:
        rec = rr.service(Recursive, autoscale=True)
        assert rec._session.id == sid
        started = time.monotonic()
        value, pids = bounded_get(rec.depth(3))
        elapsed = time.monotonic() - started
    assert value == 8
    # Four levels each held their own instance at once: two of them on lent slots.
    assert len(set(pids)) == 4, pids
    assert SLOTS < seen.high <= two_slots.settings.process_limit
    assert elapsed < 60


def test_four_tasks_each_waiting_on_two_inner_tasks_complete_on_two_slots(two_slots, project: Path) -> None:
    outer_name, inner_name = uid("lend-outer"), uid("lend-inner")
    with Runner(inner_name), Runner(outer_name) as outer, ProcessHigh(two_slots) as seen:
        fan = outer.service(svc.fan_out)
        futures = [fan(inner_name, 2, 0.3) for _ in range(4)]
        results = [bounded_get(f) for f in futures]
    spans = [span for result in results for span in result]
    assert len(spans) == 8
    # Busy instances stay within the slots: the inner work never ran more than two at a time.
    events = sorted(
        [(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans], key=lambda x: (x[0], x[1])
    )
    running = high = 0
    for _, step in events:
        running += step
        high = max(high, running)
    assert high <= SLOTS, spans
    assert seen.high <= two_slots.settings.process_limit
    assert not [s for s in flamepy.list_sessions() if s.state == flamepy.SessionState.OPEN]
