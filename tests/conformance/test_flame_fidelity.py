"""Behaviour a client can observe, pinned to Flame v0.6.0's own source (``git show v0.6.0:<path>``).

Each test names the place in Flame it mirrors. The embedded runtime must not be nicer than Flame
where a client can tell: code written against it has to work on a cluster too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import flamepy
import grpc
import pytest
from conf_support import registered, request, service_attrs, uid, wait_for, watch_to_end
from flamepy import FlameError, TaskState
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

FAILED_CODE = 3


@pytest.fixture(scope="module")
def app(runtime) -> Iterator[str]:
    with registered(uid("conf-fidelity"), service_attrs("conf_echo_service.py")) as name:
        yield name


@pytest.fixture(scope="module")
def stub(runtime) -> Iterator[frontend_pb2_grpc.FrontendStub]:
    with grpc.insecure_channel(runtime.endpoint.removeprefix("http://")) as channel:
        yield frontend_pb2_grpc.FrontendStub(channel)


# session_manager/src/controller/mod.rs `Controller::watch_task` returns the stored task
# (`(*task).clone()`); events are attached only in session_manager/src/storage/mod.rs
# `Storage::get_task` (`task.events = events`). So WatchTask messages carry no events.
def test_watch_task_messages_carry_no_events(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        task = ssn.create_task(request("bad", fail=True))
        updates = watch_to_end(ssn, task.id)
        assert updates[-1].state == TaskState.FAILED
        assert [u.events for u in updates] == [[] for _ in updates], "WatchTask must not carry events"
        stored = ssn.get_task(task.id)
        assert any(
            e.code == FAILED_CODE and "conformance failure" in (e.message or "") for e in stored.events
        )
    finally:
        ssn.close()


# flamepy's `_FutureTaskInformer.on_update` reads the failure from the watched task's events; as
# Flame's WatchTask has none, `invoke` of a failing task reports no message (issue 18 item 1).
def test_invoke_of_a_failing_task_has_no_message_as_on_flame(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        with pytest.raises(FlameError, match="^Task failed without error message"):
            ssn.invoke(request("x", fail=True))
    finally:
        ssn.close()


# `Storage::get_task` stores the events it found on the task it returns (`task.events = events`
# on the locked TaskPtr), and `SessionInfo::update_task` replaces that TaskPtr on the next state
# change. So a WatchTask or ListTask after a GetTask of a finished task carries that snapshot.
def test_list_and_watch_after_get_task_carry_its_events_snapshot(app: str) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        task = ssn.create_task(request("bad", fail=True))
        watch_to_end(ssn, task.id)
        listed = next(t for t in ssn.list_tasks() if t.id == task.id)
        assert listed.events == []
        stored = ssn.get_task(task.id)
        assert stored.events
        listed = next(t for t in ssn.list_tasks() if t.id == task.id)
        assert [e.code for e in listed.events] == [e.code for e in stored.events]
        assert [e.code for e in watch_to_end(ssn, task.id)[-1].events] == [e.code for e in stored.events]
    finally:
        ssn.close()


# session_manager/src/apiserver/frontend.rs `watch_task`: when `controller.watch_task` fails
# (here `Storage::get_task_ptr` -> NotFound) the spawned loop `break`s and the stream simply
# ends: no message, status OK.
def test_watch_of_an_unknown_task_ends_empty_without_error(stub) -> None:
    ssn_id = uid("no-such-session")
    stream = stub.WatchTask(frontend_pb2.WatchTaskRequest(session_id=ssn_id, task_id="1"), timeout=10)
    assert list(stream) == []
    assert stream.code() == grpc.StatusCode.OK


# frontend.rs `watch_task`: `req.task_id.parse::<apis::TaskID>()` fails -> invalid_argument.
def test_watch_with_a_bad_task_id_is_invalid_argument(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchTask(frontend_pb2.WatchTaskRequest(session_id="s", task_id="x"), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "invalid task id"


# tonic 0.14 (Flame's Cargo.lock) decodes at most 4 MiB per message by default
# (`DEFAULT_MAX_RECV_MESSAGE_SIZE`); larger is OUT_OF_RANGE "Error, decoded message length too
# large: found N bytes, the limit is: 4194304 bytes". Flame's apiserver/mod.rs sets no other limit.
def test_oversized_create_task_is_tonics_out_of_range(app: str, stub) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        payload = b"x" * (4 * 1024 * 1024 + 10)
        req = frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id=ssn.id, input=payload))
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateTask(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert err.value.details() == (
            f"Error, decoded message length too large: found {req.ByteSize()} bytes, "
            "the limit is: 4194304 bytes"
        )
        # Just under the limit is accepted.
        ok = frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id=ssn.id, input=b"y" * 1000))
        assert stub.CreateTask(ok, timeout=30).metadata.id
    finally:
        ssn.close()


# session_manager/src/storage/engine/sqlite.rs `get_application`: RowNotFound ->
# NotFound("application <{id}> not found").
def test_unknown_application_get_is_not_found_in_flames_words(stub) -> None:
    name = uid("no-such-app")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetApplication(frontend_pb2.GetApplicationRequest(name=name), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"application <{name}> not found"


# sqlite.rs `_create_session` inserts `(SELECT name FROM applications WHERE name=? ...)`: for an
# unknown application that is NULL, so the insert fails with SQLite's NOT NULL error, as
# FlameError::Storage -> INTERNAL (common/src/lib.rs `From<FlameError> for Status`).
def test_session_of_an_unknown_application_is_sqlites_not_null_error(stub) -> None:
    spec = types_pb2.SessionSpec(application=uid("no-such-app"))
    for call, req in (
        (stub.CreateSession, frontend_pb2.CreateSessionRequest(session_id=uid("s"), session=spec)),
        (stub.OpenSession, frontend_pb2.OpenSessionRequest(session_id=uid("s"), session=spec)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert err.value.details() == (
            "error returned from database: (code: 1299) NOT NULL constraint failed: sessions.application"
        )


# sqlite.rs `unregister_application` / `update_application`: with open sessions,
# Storage("{count} open sessions in the application"); the frontend answers Result{-1, message}.
def test_unregister_with_open_sessions_is_flames_message(runtime) -> None:
    name = uid("conf-busy")
    flamepy.register_application(name, service_attrs("conf_echo_service.py"))
    ssn = flamepy.create_session(application=name)
    try:
        with pytest.raises(FlameError, match="1 open sessions in the application"):
            flamepy.unregister_application(name)
    finally:
        ssn.close()
        flamepy.unregister_application(name)


# Flame has no bind-failure cut-off for tasks: after the retry limit (event 1002) a session's
# tasks stay Pending (session_manager/src/controller/executors, scheduler: nothing fails them).
# Then session_manager/src/storage/mod.rs `Storage::close_session` cancels them with
# `ssn.update_task(..Cancelled..)` and no `record_event`: only their creation event remains.
def test_tasks_of_an_unbindable_session_stay_pending_and_close_cancels_them_silently(runtime, stub) -> None:
    name = uid("conf-broken")
    flamepy.register_application(name, flamepy.ApplicationAttributes(command="/bin/false"))
    ssn = flamepy.create_session(name)
    try:
        task = ssn.create_task(b"x")
        wait_for(lambda: [e for e in flamepy.get_session(ssn.id).events if e.code == 1002], 60, "event 1002")
        late = ssn.create_task(b"y")
        time.sleep(0.5)
        assert ssn.get_task(task.id).state == TaskState.PENDING
        assert ssn.get_task(late.id).state == TaskState.PENDING
        ssn.close()
        for tid in (task.id, late.id):  # raw GetTask: flamepy 0.6.0's TaskState has no Cancelled (4)
            cancelled = stub.GetTask(frontend_pb2.GetTaskRequest(session_id=ssn.id, task_id=tid), timeout=10)
            assert cancelled.status.state == 4
            assert [e.code for e in cancelled.status.events] == [0], cancelled.status.events
    finally:
        if flamepy.get_session(ssn.id).state == flamepy.SessionState.OPEN:
            ssn.close()
        flamepy.unregister_application(name)


# Real Flame serves with tonic on tokio: a stream is a task, not a thread, so held WatchTask
# streams never starve unary calls (issue 13 fault 3 has the load figures).
def test_a_held_watch_does_not_block_unary_calls(app: str, stub) -> None:
    ssn = flamepy.create_session(application=app)
    try:
        task = ssn.create_task(request("slow", sleep_ms=2000))
        got: list[object] = []
        t = threading.Thread(target=lambda: got.extend(watch_to_end(ssn, task.id)), daemon=True)
        t.start()
        started = time.monotonic()
        stub.ListSession(frontend_pb2.ListSessionRequest(), timeout=5)
        assert time.monotonic() - started < 1.0
        t.join(60)
        assert got and got[-1].state == TaskState.SUCCEED  # type: ignore[attr-defined]
    finally:
        ssn.close()


# The opt-in that is not Flame: RuntimeSettings(watch_errors=True) ends such a watch with NOT_FOUND.
def test_watch_errors_setting_makes_an_unknown_task_not_found(flame_home) -> None:
    from flame_local import LocalRuntime

    with LocalRuntime(watch_errors=True, warm_instances=0) as rt:
        with grpc.insecure_channel(rt.endpoint.removeprefix("http://")) as channel:
            stream = frontend_pb2_grpc.FrontendStub(channel).WatchTask(
                frontend_pb2.WatchTaskRequest(session_id="nope", task_id="1"), timeout=10
            )
            with pytest.raises(grpc.RpcError) as err:
                list(stream)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
