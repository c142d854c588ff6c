"""Slot policy on a 2-slot runtime: sessions keep their instance, idle sessions cost others nothing.

* Two open sessions with ``min_instances`` (instance services that keep process state) and a
  third service: its 100 paced calls never wait for a rebind (p50/p99 printed, p99 < 0.1 s).
* A session keeps its process (and its state) across other services' calls on 2 slots.
* Three instance services on two slots do not swap per call (per-call times printed).
* At the process limit a parked instance may go: its session's next task fails with the
  documented "state was lost" error, never silently.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import flamepy
import pytest
import slot_policy_svc as svc
from flamepy.runner import Runner

from tests.conftest import point_flamepy_at


def point_at(rt) -> None:  # noqa: ANN001 - a LocalRuntime
    """Point flamepy (its connection and its cached cache context) at ``rt``."""
    import flamepy.core.cache as flamepy_cache

    point_flamepy_at(rt.endpoint, rt.cache_endpoint)
    flamepy_cache._context_cache = None


HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def two_slots(runtime) -> Iterator:
    """A runtime of its own with 2 slots (the session runtime has 4); flamepy points back after."""
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=2, shutdown_grace=2.0).start()
    point_at(rt)
    try:
        yield rt
    finally:
        point_at(runtime)
        rt.stop()


def no_instances(rt, timeout: float = 30.0) -> None:  # noqa: ANN001 - a LocalRuntime
    deadline = time.monotonic() + timeout
    while rt.manager.instances() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not rt.manager.instances(), rt.manager.instances()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(HERE / "slot_policy_svc.py", root / "slot_policy_svc.py")
    monkeypatch.chdir(root)
    return root


def timed_get(future, timeout: float = 60.0):  # noqa: ANN001, ANN201 - a flamepy ObjectFuture
    """``future.get()`` bounded in time (a call that waits forever for a slot fails the test)."""
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
        pytest.fail(f"no result within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def failure_message(session) -> str:  # noqa: ANN001 - a flamepy Session
    """The failure event of the session's failed task, read with GetTask (WatchTask has no events,
    as in Flame v0.6.0, so flamepy itself only says "Task failed without error message")."""
    failed = [t for t in session.list_tasks() if t.state == flamepy.TaskState.FAILED]
    assert len(failed) == 1, failed
    events = session.get_task(failed[0].id).events
    return " | ".join(e.message or "" for e in events if e.code == flamepy.TaskState.FAILED)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def test_paced_calls_beside_two_idle_sessions_never_pay_a_rebind(two_slots, project: Path) -> None:
    with Runner("slot-policy-paced") as rr:
        keepers = [rr.service(svc.Keeper()) for _ in range(2)]
        pids = [timed_get(k.bump())[1] for k in keepers]  # both sessions hold state now
        fn = rr.service(svc.trivial)
        assert timed_get(fn(-1)) == -1  # its first call binds an instance: not measured
        times: list[float] = []
        for i in range(100):
            started = time.monotonic()
            assert timed_get(fn(i)) == i
            times.append(time.monotonic() - started)
            time.sleep(0.2)
        p50, p99 = percentile(times, 0.50), percentile(times, 0.99)
        print(
            f"\n100 paced calls beside two idle sessions: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(times) * 1000:.1f} ms"
        )
        # The idle sessions kept their processes (and so their state) all along.
        assert [timed_get(k.bump()) for k in keepers] == [(2, pids[0]), (2, pids[1])]
    assert p99 < 0.1, times


def test_a_session_keeps_its_state_across_other_services_calls_on_two_slots(two_slots, project: Path) -> None:
    with Runner("slot-policy-keep") as rr:
        keeper = rr.service(svc.Keeper())
        first = timed_get(keeper.bump())
        others = [rr.service(svc.Keeper()) for _ in range(2)]
        fn = rr.service(svc.trivial)
        for round_ in range(3):
            assert [timed_get(o.bump())[0] for o in others] == [round_ + 1] * 2
            assert timed_get(fn(round_)) == round_
        assert timed_get(keeper.bump()) == (first[0] + 1, first[1])


def test_three_instance_services_on_two_slots_do_not_swap_per_call(two_slots, project: Path) -> None:
    with Runner("slot-policy-three") as rr:
        services = [rr.service(svc.Keeper()) for _ in range(3)]
        pids = [timed_get(s.bump())[1] for s in services]
        per_call: list[float] = []
        for round_ in range(10):
            for s, pid in zip(services, pids, strict=True):
                started = time.monotonic()
                assert timed_get(s.bump()) == (round_ + 2, pid)
                per_call.append(time.monotonic() - started)
        print(
            f"\nthree instance services on two slots, 30 calls: median {statistics.median(per_call) * 1000:.1f} ms, "
            f"max {max(per_call) * 1000:.1f} ms"
        )
    assert statistics.median(per_call) < 0.1 and max(per_call) < 0.5, per_call


def test_at_the_process_limit_a_lost_session_state_is_told_not_silent(two_slots, project: Path) -> None:
    from flamepy.core.types import FlameError

    no_instances(two_slots)  # the earlier tests' services are closed and gone
    two_slots.settings.max_processes = 2  # the manager reads it on every pass
    try:
        with Runner("slot-policy-lost") as rr:
            keepers = [rr.service(svc.Keeper()) for _ in range(2)]
            for k in keepers:
                assert timed_get(k.bump())[0] == 1
            fn = rr.service(svc.trivial)
            assert timed_get(fn(7)) == 7  # a parked instance went for it (both processes were parked)
            assert len(two_slots.manager.instances()) <= 2
            outcomes: list[object] = []
            for k in keepers:
                try:
                    outcomes.append(timed_get(k.bump()))
                except FlameError:
                    outcomes.append(failure_message(k._session))
            lost = [o for o in outcomes if isinstance(o, str)]
            assert len(lost) == 1, outcomes
            assert (
                "this session's state was lost because the flame-local runtime ended its idle instance"
                in lost[0]
            )
            assert "max_processes" in lost[0]
            kept = [o for o in outcomes if not isinstance(o, str)]
            assert kept[0][0] == 2  # the other session kept its process and its state
    finally:
        two_slots.settings.max_processes = None
