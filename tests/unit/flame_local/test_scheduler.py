"""The scheduling rule as a plan over plain data: no store, no threads, no processes."""

from __future__ import annotations

from collections.abc import Sequence

from flame_local.executors.scheduler import (
    STARVED_AFTER_MS,
    InstanceView,
    Plan,
    SessionView,
    Snapshot,
    bind_retry_delay,
    keeps_min_slot,
    plan,
)

NOW = 1_000_000.0  # wall clock, ms
WAITED = NOW - 200  # pending work that has waited a moment (its age orders sessions only)
FRESH = NOW  # pending work just created


def snap(
    sessions: list[SessionView],
    instances: Sequence[InstanceView] = (),
    capacity: int = 4,
    limit: int | None = None,
) -> Snapshot:
    return Snapshot(
        sessions=sessions, instances=list(instances), capacity=capacity, now_ms=NOW, process_limit=limit
    )


def bound(n: int, session: str, *, state: str = "bound", first: int = 1) -> list[InstanceView]:
    return [InstanceView(f"{session}-{i}", session, state) for i in range(first, first + n)]


def test_nothing_to_do_is_an_empty_plan() -> None:
    assert plan(snap([])) == Plan()
    assert plan(snap([SessionView("a")])) == Plan()


def test_a_pending_task_gets_one_instance_at_once() -> None:
    assert plan(snap([SessionView("a", pending=1, oldest_pending_ms=NOW)])).launch == ("a",)


def test_a_burst_gets_its_instances_at_once() -> None:
    # Flame v0.6.0 session_manager/src/scheduler/plugins/priority.rs `compute_demand` (pending +
    # running, floored to batches, clamped to [min, max]) and actions/allocate.rs (an underused
    # session is pushed back after each committed gang until it is satisfied, in one cycle): a
    # burst of fresh tasks gets its instances in the first cycle, with no wait.
    fresh = SessionView("a", pending=5, running=1, oldest_pending_ms=NOW)
    assert plan(snap([fresh], bound(1, "a", state="running"))).launch == ("a",) * 3  # capacity 4
    burst = SessionView("a", pending=3, oldest_pending_ms=NOW)
    assert plan(snap([burst], capacity=8)).launch == ("a",) * 3
    assert plan(snap([burst], bound(1, "a"), capacity=8)).launch == ("a",) * 2


def test_min_instances_start_without_work_and_max_caps() -> None:
    assert plan(snap([SessionView("a", min_instances=2)])).launch == ("a", "a")
    capped = SessionView("a", pending=10, oldest_pending_ms=WAITED, max_instances=2)
    assert plan(snap([capped])).launch == ("a", "a")


def test_capacity_counts_every_live_instance_even_released_ones() -> None:
    ssn = SessionView("a", pending=4, oldest_pending_ms=WAITED)
    released = [InstanceView("x", "gone", "running", evict=True)]
    assert plan(snap([ssn], released, capacity=2)).launch == ("a",)


def test_gangs_launch_whole_batches_only() -> None:
    gang = SessionView("g", pending=3, oldest_pending_ms=WAITED, batch_size=2)
    assert plan(snap([gang], capacity=4)).launch == ("g", "g")  # floor(3 / 2) * 2
    assert plan(snap([gang], capacity=1)).launch == ()  # a gang never starts half
    big = SessionView("g", pending=4, oldest_pending_ms=WAITED, batch_size=2)
    assert plan(snap([big], bound(1, "g"), capacity=4)).launch == ("g", "g")  # deficit 3 -> 2


def test_round_robin_oldest_work_first() -> None:
    a = SessionView("a", pending=3, oldest_pending_ms=WAITED)
    b = SessionView("b", pending=3, oldest_pending_ms=WAITED - 10)
    assert plan(snap([a, b], capacity=3)).launch == ("b", "a", "b")


def test_closed_unschedulable_and_backing_off_sessions_get_nothing() -> None:
    work = {"pending": 1, "oldest_pending_ms": WAITED}
    assert plan(snap([SessionView("a", open=False, **work)])).launch == ()
    assert plan(snap([SessionView("a", schedulable=False, **work)])).launch == ()
    assert plan(snap([SessionView("a", backing_off=True, **work)])).launch == ()


def test_full_runtime_releases_idle_instances_above_min_for_a_waiting_session() -> None:
    idle = SessionView("idle", min_instances=1)
    waiting = SessionView("w", pending=1, oldest_pending_ms=NOW)
    # idle-2 keeps the min_instances slot (parked, holds no slot); idle-1 above min holds one.
    assert plan(snap([idle, waiting], bound(2, "idle"), capacity=1)) == Plan(release=("idle-1",))
    assert plan(snap([idle, waiting], bound(2, "idle"), capacity=2)) == Plan(launch=("w",))


def test_instances_of_sessions_with_pending_or_running_work_are_not_released() -> None:
    busy = SessionView("busy", pending=1, running=1, oldest_pending_ms=FRESH)
    running = SessionView("run", running=1)
    waiting = SessionView("w", pending=1, oldest_pending_ms=NOW - 10 * STARVED_AFTER_MS)
    insts = bound(1, "busy") + bound(1, "run", state="running")
    assert plan(snap([busy, running, waiting], insts, capacity=2)) == Plan()


def test_a_parked_min_instance_holds_no_slot_and_goes_only_at_the_process_limit() -> None:
    keeper = SessionView("keep", min_instances=1)
    young = SessionView("w", pending=1, oldest_pending_ms=NOW - STARVED_AFTER_MS + 1)
    # The parked instance keeps its session's state; the other session runs beside it.
    assert plan(snap([keeper, young], bound(1, "keep"), capacity=1)) == Plan(launch=("w",))
    assert plan(snap([keeper, young], bound(1, "keep"), capacity=1, limit=1)) == Plan()
    starved = SessionView("w", pending=1, oldest_pending_ms=NOW - STARVED_AFTER_MS)
    assert plan(snap([keeper, starved], bound(1, "keep"), capacity=1)) == Plan(launch=("w",))
    assert plan(snap([keeper, starved], bound(1, "keep"), capacity=1, limit=1)) == Plan(reclaim=("keep-1",))
    # A session that already has an instance is not starved: it waits for a process.
    has_one = SessionView("w", pending=1, running=1, oldest_pending_ms=NOW - STARVED_AFTER_MS)
    insts = bound(1, "keep") + bound(1, "w", state="running")
    assert plan(snap([keeper, has_one], insts, capacity=2, limit=2)) == Plan()


def test_releases_stop_at_what_the_waiting_sessions_need() -> None:
    idle = SessionView("idle")
    waiting = SessionView("w", pending=1, oldest_pending_ms=NOW)
    assert plan(snap([idle, waiting], bound(3, "idle"), capacity=3)).release == ("idle-1",)


def test_instances_of_forgotten_sessions_count_as_min_zero() -> None:
    waiting = SessionView("w", pending=1, oldest_pending_ms=NOW)
    assert plan(snap([waiting], bound(1, "forgotten"), capacity=1)).release == ("forgotten-1",)


def test_a_starved_gang_takes_a_surplus_instance_then_a_min_slot_only_at_the_process_limit() -> None:
    keeper = SessionView("keep", min_instances=1)
    starved = SessionView("w", pending=2, oldest_pending_ms=NOW - STARVED_AFTER_MS, batch_size=2)
    insts = bound(1, "keep") + bound(1, "keep", first=2)
    # Two idle instances of a min_instances=1 session, a 2-gang waits: the one above min goes.
    assert plan(snap([keeper, starved], insts, capacity=2)) == Plan(release=("keep-1",))
    # At the process limit the parked one goes too.
    limited = snap([keeper, starved], insts, capacity=2, limit=2)
    assert plan(limited) == Plan(release=("keep-1",), reclaim=("keep-2",))


def test_keeps_min_slot_and_bind_retry_delay() -> None:
    assert keeps_min_slot(1, 1) and not keeps_min_slot(1, 2) and not keeps_min_slot(0, 1)
    assert [bind_retry_delay(n) for n in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.8, 1.6, 2.0]


def test_a_released_instance_does_not_count_as_the_sessions_own() -> None:
    ssn = SessionView("a", pending=1, running=1, oldest_pending_ms=FRESH)
    leaving = [InstanceView("a-1", "a", "running", evict=True)]
    assert plan(snap([ssn], leaving, capacity=3)).launch == ("a", "a")


def test_an_idle_instance_about_to_take_its_sessions_pending_task_is_kept() -> None:
    served = SessionView("s", pending=1, oldest_pending_ms=FRESH)  # its instance takes it next
    waiting = SessionView("w", pending=1, oldest_pending_ms=NOW)
    assert plan(snap([served, waiting], bound(1, "s"), capacity=1)) == Plan()


# -- slot lending: an instance whose task waits on other tasks holds no slot ---------------------------


def running(session: str, n: int = 1, *, waiting: bool = False, first: int = 1) -> list[InstanceView]:
    return [
        InstanceView(f"{session}-{i}", session, "running", waiting=waiting) for i in range(first, first + n)
    ]


def test_a_waiting_instance_lends_its_slot_to_the_work_it_waits_on() -> None:
    # Recursion in one session: its only instance runs a task that waits on a pending inner task.
    ssn = SessionView("r", pending=1, running=1, oldest_pending_ms=FRESH)
    assert plan(snap([ssn], running("r"), capacity=1)) == Plan()  # busy: the inner task would wait
    assert plan(snap([ssn], running("r", waiting=True), capacity=1)) == Plan(launch=("r",))


def test_recursion_deeper_than_the_slots_stops_at_the_process_limit() -> None:
    ssn = SessionView("r", pending=1, running=3, oldest_pending_ms=FRESH)
    chain = running("r", 3, waiting=True)
    assert plan(snap([ssn], chain, capacity=2, limit=8)) == Plan(launch=("r",))
    assert plan(snap([ssn], chain, capacity=2, limit=3)) == Plan()


def test_lent_slots_serve_other_sessions_but_busy_instances_stay_within_capacity() -> None:
    other = SessionView("o", pending=5, oldest_pending_ms=WAITED)
    insts = running("a", waiting=True) + running("b")
    # Two slots: b holds one, a's is lent: one more instance, not two.
    assert plan(
        snap([SessionView("a", running=1), SessionView("b", running=1), other], insts, capacity=2)
    ) == Plan(launch=("o",))


def test_only_a_running_instance_can_lend_its_slot() -> None:
    ssn = SessionView("a", pending=2, oldest_pending_ms=WAITED)
    odd = [InstanceView("x-1", "x", "binding", waiting=True)]  # a stale mark on a binding instance
    assert plan(snap([ssn], odd, capacity=1)) == Plan()


def test_parked_instances_keep_their_place_for_three_fixed_services_on_two_slots() -> None:
    fixed = [SessionView(s, min_instances=1, max_instances=1) for s in ("a", "b", "c")]
    insts = bound(1, "a") + bound(1, "b")
    # The third fixed service binds beside the two parked ones; nobody is released.
    assert plan(snap(fixed, insts, capacity=2, limit=8)) == Plan(launch=("c",))
    called = [
        fixed[0],
        fixed[1],
        SessionView("c", pending=1, min_instances=1, max_instances=1, oldest_pending_ms=NOW),
    ]
    assert plan(snap(called, insts + bound(1, "c"), capacity=2, limit=8)) == Plan()
