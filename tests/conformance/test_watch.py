"""WatchTask: updates end with the terminal state; a finished task is sent at once.

Only states are checked here: whether WatchTask messages carry task events is not part of the
contract (Flame v0.6.0 sends the stored task without them); GetTask's events are checked in
test_task_failures.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import flamepy
import pytest
from conf_support import call, registered, request, service_attrs, uid, watch_to_end
from flamepy import TaskState


@pytest.fixture(scope="module")
def session(runtime) -> Iterator[flamepy.Session]:
    with registered(uid("conf-watch"), service_attrs("conf_echo_service.py")) as app:
        ssn = flamepy.create_session(application=app)
        yield ssn
        ssn.close()


def test_watch_ends_with_succeed_and_never_goes_back(session: flamepy.Session) -> None:
    task = session.create_task(request("watched", sleep_ms=300))
    updates = watch_to_end(session, task.id)
    states = [u.state for u in updates]
    assert states and states[-1] == TaskState.SUCCEED
    assert all(u.id == task.id and u.session_id == session.id for u in updates)
    order = [TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEED]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)


def test_watch_of_a_finished_task_sends_its_final_state_first(session: flamepy.Session) -> None:
    assert call(session, "done already")["out"] == "done already"
    task = next(t for t in session.list_tasks() if t.state == TaskState.SUCCEED)
    started = time.monotonic()
    first = next(iter(session.watch_task(task.id)))
    assert first.state == TaskState.SUCCEED and first.id == task.id
    assert time.monotonic() - started < 5


def test_watch_ends_with_failed_for_a_failing_task(session: flamepy.Session) -> None:
    task = session.create_task(request("bad", fail=True))
    updates = watch_to_end(session, task.id)
    assert updates[-1].state == TaskState.FAILED and updates[-1].is_failed()
    assert TaskState.SUCCEED not in [u.state for u in updates]


def test_task_output_is_stored_after_the_watch_ends(session: flamepy.Session) -> None:
    task = session.create_task(request("out please", reply="the output"))
    final = watch_to_end(session, task.id)[-1]
    assert final.state == TaskState.SUCCEED
    stored = session.get_task(task.id)
    assert stored.output is not None and b"the output" in stored.output
