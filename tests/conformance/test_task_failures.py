"""Task failure: recorded state and events, session counters, recovery, and bind failures."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import flamepy
import pytest
from conf_support import call, registered, request, service_attrs, settings, uid, wait_for, watch_to_end
from flamepy import SessionState, TaskState

FAILED_CODE = int(TaskState.FAILED)
BIND_FAILED_CODE = 1001


@pytest.fixture(scope="module")
def app(runtime) -> Iterator[str]:
    with registered(uid("conf-fail"), service_attrs("conf_echo_service.py")) as name:
        yield name


def _fail_one(ssn: flamepy.Session, **fields) -> flamepy.Task:
    task = ssn.create_task(request("boom", **fields))
    updates = watch_to_end(ssn, task.id)
    assert updates[-1].state == TaskState.FAILED
    assert all(u.state != TaskState.SUCCEED for u in updates)
    return task


def test_failed_task_state_and_failed_event_with_the_exception_text(app: str) -> None:
    ssn = flamepy.create_session(application=app, common_data=settings(app, fail_tasks=True))
    try:
        before = flamepy.get_session(ssn.id).failed
        task = _fail_one(ssn)
        stored = ssn.get_task(task.id)
        assert stored.state == TaskState.FAILED and stored.is_failed() and stored.is_completed()
        failed = [e for e in stored.events if e.code == FAILED_CODE]
        assert failed, [(e.code, e.message) for e in stored.events]
        assert f"conformance failure in task {task.id}" in failed[0].message
        after = flamepy.get_session(ssn.id)
        assert after.failed == before + 1 and after.succeed == 0
        assert after.state == SessionState.OPEN
    finally:
        ssn.close()
    assert flamepy.get_session(ssn.id).state == SessionState.CLOSED


def test_invoke_of_a_failing_task_raises(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        # Flame v0.6.0's WatchTask carries no events (controller/mod.rs watch_task), so flamepy's
        # invoke has no message; the stored failure event is checked above (GetTask).
        with pytest.raises(Exception, match="^Task failed without error message"):
            ssn.invoke(request("x", fail=True))
    finally:
        ssn.close()


def test_settings_without_failure_flags_succeed(app: str) -> None:
    ssn = flamepy.create_session(application=app, common_data=settings(app, note="ok"))
    try:
        assert call(ssn, "fine") == {
            "out": "fine",
            "note": "ok",
            "counts": {"tasks": 1, "enters": 1, "leaves": 0},
        }
        fresh = flamepy.get_session(ssn.id)
        assert (fresh.succeed, fresh.failed) == (1, 0)
    finally:
        ssn.close()


def test_session_goes_on_after_failures_and_retries_succeed(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        _fail_one(ssn, fail=True)
        _fail_one(ssn, fail=True)
        for i in range(2):
            assert call(ssn, f"retry{i}")["out"] == f"retry{i}"
        fresh = flamepy.get_session(ssn.id)
        assert (fresh.succeed, fresh.failed, fresh.state) == (2, 2, SessionState.OPEN)
    finally:
        ssn.close()


def test_mixed_parallel_results_are_reported_per_task(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    plan = [("t0", False), ("t1", True), ("t2", False), ("t3", True), ("t4", False)]

    def run(item: tuple[str, bool]) -> tuple[str, str]:
        try:
            return "ok", call(ssn, item[0], fail=item[1])["out"]
        except Exception as exc:  # noqa: BLE001 - the failure is the result under test
            return "failed", str(exc)

    try:
        with ThreadPoolExecutor(max_workers=len(plan)) as pool:
            results = list(pool.map(run, plan))
        assert sorted(v for s, v in results if s == "ok") == ["t0", "t2", "t4"]
        assert sum(1 for s, _ in results if s == "failed") == 2
        fresh = flamepy.get_session(ssn.id)
        assert (fresh.succeed, fresh.failed) == (3, 2)
    finally:
        ssn.close()


def test_a_new_session_works_after_a_failing_one(app: str) -> None:
    bad = flamepy.create_session(application=app, common_data=settings(app, fail_tasks=True))
    _fail_one(bad)
    bad.close()
    assert flamepy.get_session(bad.id).state == SessionState.CLOSED
    good = flamepy.create_session(application=app)
    try:
        assert call(good, "fresh")["out"] == "fresh"
    finally:
        good.close()


def test_session_enter_failure_is_a_bind_failed_session_event(app: str) -> None:
    sid = uid("conf-enter-fail")
    ssn = flamepy.create_session(
        application=app, session_id=sid, common_data=settings(app, fail_enter=True), max_instances=1
    )
    try:
        ssn.create_task(request("trigger bind"))

        def bind_events() -> list[flamepy.Event]:
            return [e for e in flamepy.get_session(sid).events if e.code == BIND_FAILED_CODE]

        events = wait_for(bind_events, 60, "a bind-failed session event", every=0.25)
        messages = [e.message or "" for e in events]
        assert any("failed to bind session" in m for m in messages), messages
        assert any("conformance: refusing to enter this session" in m for m in messages), messages
        assert flamepy.get_session(sid).state == SessionState.OPEN
    finally:
        flamepy.close_session(sid)
