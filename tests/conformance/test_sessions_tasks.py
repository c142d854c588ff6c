"""Session and task life cycles, counters, common data and the service contexts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import flamepy
import pytest
from conf_support import call, registered, request, service_attrs, settings, uid, watch_to_end
from flamepy import SessionState, TaskState


@pytest.fixture(scope="module")
def app(runtime) -> Iterator[str]:
    with registered(uid("conf-echo"), service_attrs("conf_echo_service.py")) as name:
        yield name


def _state_in_list(session_id: str) -> SessionState | None:
    return next((s.state for s in flamepy.list_sessions() if s.id == session_id), None)


def test_create_get_list_close_and_close_again(app: str) -> None:
    sid = uid("conf-life")
    ssn = flamepy.create_session(application=app, session_id=sid)
    assert (ssn.id, ssn.application, ssn.state) == (sid, app, SessionState.OPEN)
    got = flamepy.get_session(sid)
    assert (got.id, got.application, got.state) == (sid, app, SessionState.OPEN)
    assert _state_in_list(sid) == SessionState.OPEN
    flamepy.close_session(sid)
    assert _state_in_list(sid) == SessionState.CLOSED
    assert flamepy.get_session(sid).state == SessionState.CLOSED
    flamepy.close_session(sid)  # closing a closed session is not an error
    assert flamepy.get_session(sid).state == SessionState.CLOSED


@pytest.mark.parametrize(
    "spec",
    [
        {"resreq": flamepy.ResourceRequirement(cpu=1, memory=512, gpu=0)},
        {"min_instances": 0, "max_instances": 5},
        {"batch_size": 2, "min_instances": 2},
    ],
    ids=["resreq", "min-max", "batch"],
)
def test_session_spec_variants_open_and_run(app: str, spec: dict) -> None:
    ssn = flamepy.create_session(application=app, session_id=uid("conf-spec"), **spec)
    try:
        assert ssn.state == SessionState.OPEN
        if spec.get("batch_size", 1) == 1:
            assert call(ssn, "spec")["out"] == "spec"
    finally:
        ssn.close()


def test_sessions_of_one_app_are_independent_and_counters_count(app: str) -> None:
    sessions = [flamepy.create_session(application=app, session_id=uid("conf-multi")) for _ in range(2)]
    try:
        for i, ssn in enumerate(sessions):
            for j in range(i + 2):
                reply = call(ssn, f"s{i}-t{j}")
                assert reply["out"] == f"s{i}-t{j}"
                assert reply["counts"] == {"tasks": j + 1, "enters": 1, "leaves": 0}
        for i, ssn in enumerate(sessions):
            fresh = flamepy.get_session(ssn.id)
            assert (fresh.succeed, fresh.failed) == (i + 2, 0)
    finally:
        for ssn in sessions:
            ssn.close()


def test_a_new_session_starts_a_fresh_service_state(app: str) -> None:
    first = flamepy.create_session(application=app)
    for i in range(2):
        assert call(first, "x")["counts"]["tasks"] == i + 1
    first.close()
    second = flamepy.create_session(application=app)
    try:
        assert call(second, "y")["counts"] == {"tasks": 1, "enters": 1, "leaves": 0}
    finally:
        second.close()


def test_concurrent_tasks_in_one_session_all_succeed(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            outs = list(pool.map(lambda i: call(ssn, f"c{i}")["out"], range(8)))
        assert sorted(outs) == sorted(f"c{i}" for i in range(8))
        assert flamepy.get_session(ssn.id).succeed == 8
    finally:
        ssn.close()


def test_sessions_created_from_parallel_threads(app: str) -> None:
    ids = [uid("conf-par") for _ in range(4)]
    made: list[flamepy.Session] = []
    lock = threading.Lock()

    def create(sid: str) -> None:
        ssn = flamepy.create_session(application=app, session_id=sid)
        with lock:
            made.append(ssn)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(create, ids))
        assert sorted(s.id for s in made) == sorted(ids)
        assert all(flamepy.get_session(sid).state == SessionState.OPEN for sid in ids)
    finally:
        for sid in ids:
            flamepy.close_session(sid)


def test_task_goes_pending_to_succeed_and_keeps_its_record(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        task = ssn.create_task(request("state", sleep_ms=200))
        assert task.session_id == ssn.id
        assert ssn.get_task(task.id).state in (TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEED)
        assert watch_to_end(ssn, task.id)[-1].state == TaskState.SUCCEED
        done = ssn.get_task(task.id)
        assert done.state == TaskState.SUCCEED
        assert done.events is not None
        assert [e.code for e in done.events][:1] == [int(TaskState.PENDING)]
    finally:
        ssn.close()


def test_list_tasks_returns_every_task_of_the_session(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        for i in range(4):
            assert call(ssn, f"l{i}")["out"] == f"l{i}"
        tasks = list(ssn.list_tasks())
        assert len(tasks) == 4
        assert len({t.id for t in tasks}) == 4
        for t in tasks:
            assert t.session_id == ssn.id and t.state == TaskState.SUCCEED and t.creation_time is not None
    finally:
        ssn.close()


def test_without_common_data(app: str) -> None:
    ssn = flamepy.create_session(application=app, common_data=None)
    try:
        assert ssn.common_data() is None
        reply = call(ssn, "none", show=["session"])
        assert reply["note"] is None
        assert reply["session"] == {"session_id": ssn.id, "has_common_data": False}
    finally:
        ssn.close()


def test_common_data_reaches_every_task_unchanged(app: str) -> None:
    data = settings(app, note="shared note")
    ssn = flamepy.create_session(application=app, common_data=data)
    try:
        assert ssn.common_data() == data
        assert flamepy.get_session(ssn.id).common_data() == data
        for i in range(3):
            reply = call(ssn, f"cd{i}", show=["session"])
            assert reply["out"] == f"cd{i}" and reply["note"] == "shared note"
            assert reply["session"]["has_common_data"] is True
    finally:
        ssn.close()


def test_contexts_are_reported_only_when_asked(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        plain = call(ssn, "plain")
        assert not {"task", "session", "app"} & set(plain)
        only_task = call(ssn, "t", show=["task"])
        assert set(only_task) & {"task", "session", "app"} == {"task"}
        assert only_task["task"]["session_id"] == ssn.id and only_task["task"]["task_id"]
        assert only_task["task"]["input_len"] > 0
        every = call(ssn, "all", show=["task", "session", "app"])
        assert every["session"]["session_id"] == ssn.id
        assert every["app"]["name"] == app
        assert {t.id for t in ssn.list_tasks()} >= {every["task"]["task_id"], only_task["task"]["task_id"]}
    finally:
        ssn.close()


def test_output_can_differ_from_input(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        assert call(ssn, "in", reply="out")["out"] == "out"
    finally:
        ssn.close()


def test_batch_session_runs_tasks_one_by_one_and_in_parallel(app: str) -> None:
    ssn = flamepy.create_session(application=app, batch_size=2, min_instances=2)
    try:
        for i in range(2):
            assert call(ssn, f"b{i}")["out"] == f"b{i}"
        futures = [ssn.run(request(f"p{i}")) for i in range(4)]
        outs = [json.loads(f.result(timeout=120).decode())["out"] for f in futures]
        assert outs == [f"p{i}" for i in range(4)]
    finally:
        ssn.close()


def test_batch_of_two_does_not_start_a_lone_task(app: str) -> None:
    ssn = flamepy.create_session(application=app, batch_size=2, min_instances=0)
    try:
        lone = ssn.create_task(request("lone"))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert ssn.get_task(lone.id).state == TaskState.PENDING
            time.sleep(0.25)
        mate = ssn.create_task(request("mate"))
        assert watch_to_end(ssn, lone.id)[-1].state == TaskState.SUCCEED
        assert watch_to_end(ssn, mate.id)[-1].state == TaskState.SUCCEED
    finally:
        ssn.close()
