"""Faults and bad requests against the runtime, through real flamepy, gRPC and Flight."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import flamepy
import grpc
import pyarrow.flight as flight
import pytest
from flamepy.core.types import FlameError
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

from tests.conftest import PYTHON
from tests.polling import wait_for


def _ping(ms: int) -> bytes:
    return json.dumps({"duration": ms}).encode()


def _stub(runtime) -> frontend_pb2_grpc.FrontendStub:
    return frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(runtime.endpoint.split("://")[1]))


def _instance_pid(runtime, session_id: str) -> int:
    def find():
        for inst in runtime.manager.instances():
            if inst.session_id == session_id and inst.state == "running" and inst.pid:
                return inst.pid
        return None

    return wait_for(find, 30, f"a running instance of {session_id}")


def test_instance_killed_mid_task_fails_that_task_and_session_goes_on(runtime) -> None:
    ssn = flamepy.create_session("flmping")
    try:
        future = ssn.run(_ping(60_000))
        pid = _instance_pid(runtime, ssn.id)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(FlameError):
            future.result(timeout=20)
        # WatchTask carries no events (as Flame's): the reason is in the task's GetTask events.
        events = [e.message or "" for e in ssn.get_task("1").events if e.code == 3]
        assert events and "was killed by SIGKILL while running task 1" in events[-1], events
        out = json.loads(ssn.invoke(_ping(1)))
        assert out["message"].startswith("Completed on <")
        assert _instance_pid_differs(runtime, ssn.id, pid)
    finally:
        ssn.close()


def _instance_pid_differs(runtime, session_id: str, old: int) -> bool:
    pids = {i.pid for i in runtime.manager.instances() if i.session_id == session_id}
    return old not in pids


def test_task_on_closed_session_is_flames_error(runtime) -> None:
    ssn = flamepy.create_session("flmping")
    ssn.close()
    with pytest.raises(FlameError, match="Cannot create task in closed session"):
        ssn.create_task(_ping(1))


def test_close_refuses_while_running_and_cancels_pending(runtime) -> None:
    ssn = flamepy.create_session("flmping", max_instances=1)
    running = ssn.create_task(_ping(1500))
    pending = ssn.create_task(_ping(1))
    wait_for(lambda: ssn.get_task(running.id).state == flamepy.TaskState.RUNNING, 30, "task running")
    with pytest.raises(FlameError, match="Cannot close session with running tasks"):
        flamepy.close_session(ssn.id)
    wait_for(lambda: ssn.get_task(running.id).state == flamepy.TaskState.SUCCEED, 30, "task done")
    closed = wait_for(lambda: _try_close(ssn.id), 30, "close to succeed")
    assert closed.state == flamepy.SessionState.CLOSED
    stub = _stub(runtime)
    task = stub.GetTask(frontend_pb2.GetTaskRequest(session_id=ssn.id, task_id=pending.id))
    assert task.status.state in (types_pb2.TaskState.Cancelled, types_pb2.TaskState.Succeed)


def _try_close(session_id: str):
    try:
        return flamepy.close_session(session_id)
    except FlameError:
        return None


def test_unknown_session_and_bad_task_ids(runtime) -> None:
    with pytest.raises(FlameError, match="not found"):
        flamepy.get_session("no-such-session")
    with pytest.raises(FlameError) as err:
        flamepy.open_session("no-such-session")
    assert err.value.code == flamepy.FlameErrorCode.NOT_FOUND
    stub = _stub(runtime)
    ssn = flamepy.create_session("flmping")
    try:
        for bad in ("abc", "0", "-1", ""):
            with pytest.raises(grpc.RpcError) as rpc:
                stub.GetTask(frontend_pb2.GetTaskRequest(session_id=ssn.id, task_id=bad))
            assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert rpc.value.details() == "invalid task id"
        # Flame's WatchTask of an unknown task ends at once, empty and OK (frontend.rs `break`s);
        # RuntimeSettings.watch_errors makes it NOT_FOUND (tests/conformance/test_flame_fidelity.py).
        stream = stub.WatchTask(frontend_pb2.WatchTaskRequest(session_id=ssn.id, task_id="99"), timeout=10)
        assert list(stream) == [] and stream.code() == grpc.StatusCode.OK
    finally:
        ssn.close()


def test_malformed_flight_requests_get_clean_errors(runtime) -> None:
    client = flight.FlightClient(runtime.cache_endpoint)
    for ticket in (b"\xff\xfe", b"no-such-app/ssn/obj:0", b"a/../b/c:0", b"app/ssn/obj:notanumber"):
        with pytest.raises(flight.FlightError) as err:
            client.do_get(flight.Ticket(ticket)).read_all()
        assert "Traceback" not in str(err.value)
    with pytest.raises(flight.FlightError, match=r"\.\."):
        list(client.do_action(flight.Action("DELETE", b"app/../x")))


def test_bind_failure_records_flame_events_and_stops_retrying(runtime) -> None:
    runtime.store.fail_unbindable_tasks = True  # RuntimeSettings(fail_unbindable_tasks=True); Flame: pending
    name = f"broken-{os.getpid()}"
    flamepy.register_application(name, flamepy.ApplicationAttributes(command="/bin/false"))
    ssn = flamepy.create_session(name)
    try:
        ssn.create_task(b"x")

        def events():
            return [e for e in flamepy.get_session(ssn.id).events if e.code == 1002]

        wait_for(events, 30, "the retry limit event")
        codes = [e.code for e in flamepy.get_session(ssn.id).events]
        assert codes.count(1001) == runtime.settings.bind_retry_limit
        first = next(e for e in flamepy.get_session(ssn.id).events if e.code == 1001)
        assert "failed to bind session with return_code 11" in first.message
        assert "exited with code 1" in first.message
        # With the opt-in (Flame: pending forever), waiting and new tasks fail with the reason.
        assert flamepy.get_session(ssn.id).failed == 1
        with pytest.raises(FlameError):
            ssn.invoke(b"again")
        again = ssn.get_task("2")
        messages = [e.message or "" for e in again.events if e.code == 3]
        assert messages and re.search(
            "no executor could be bound to session .* exited with code 1", messages[-1]
        )
    finally:
        runtime.store.fail_unbindable_tasks = False
        ssn.close()
        flamepy.unregister_application(name)


def test_stop_leaves_no_process_socket_or_temp_dir(flame_home: Path) -> None:
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=2).start()
    stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(rt.endpoint.split("://")[1]))
    stub.CreateSession(
        frontend_pb2.CreateSessionRequest(
            session_id="s1", session=types_pb2.SessionSpec(application="flmping", min_instances=2)
        )
    )
    wait_for(lambda: len([i for i in rt.manager.instances() if i.state == "bound"]) == 2, 30, "2 bound")
    pids = [i.pid for i in rt.manager.instances()]
    home, sockets = rt.home, rt._socket_dir
    rt.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not home.exists() and sockets is not None and not sockets.exists()


def test_idle_min_instances_hold_no_slot_and_stay_while_another_session_runs(flame_home: Path) -> None:
    """Two sessions keep idle min_instances on both slots; a third session's task runs beside them
    (parked instances hold no slot) and neither loses its instance (docs/runtime.md, "Slots")."""
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=2).start()
    stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(rt.endpoint.split("://")[1]))
    try:
        for sid in ("held-1", "held-2", "waiting"):
            stub.CreateSession(
                frontend_pb2.CreateSessionRequest(
                    session_id=sid, session=types_pb2.SessionSpec(application="flmping", min_instances=1)
                )
            )
        wait_for(lambda: len([i for i in rt.manager.instances() if i.state == "bound"]) == 3, 30, "3 bound")
        before = {i.session_id: i.pid for i in rt.manager.instances()}
        task = stub.CreateTask(
            frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id="waiting", input=_ping(1)))
        )

        def state(sid: str, tid: str) -> int:
            return stub.GetTask(frontend_pb2.GetTaskRequest(session_id=sid, task_id=tid)).status.state

        wait_for(
            lambda: state("waiting", task.metadata.id) == types_pb2.TaskState.Succeed, 30, "the waiting task"
        )
        for held in ("held-1", "held-2"):
            again = stub.CreateTask(
                frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id=held, input=_ping(1)))
            )
            tid = again.metadata.id
            wait_for(lambda h=held, t=tid: state(h, t) == types_pb2.TaskState.Succeed, 30, held)
        after = {i.session_id: i.pid for i in rt.manager.instances() if not i.evict}
        assert after == before, (before, after)  # nobody was rebound
    finally:
        rt.stop()


def test_runtime_killed_while_task_runs_gives_client_error_not_hang(tmp_path: Path, flame_home: Path) -> None:
    from flame_local.process import RuntimeProcess

    rp = RuntimeProcess.start(max_instances=2)
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys, time
            import flamepy
            ssn = flamepy.create_session("flmping")
            fut = ssn.run(json.dumps({"duration": 60000}).encode())
            print("submitted", flush=True)
            t = time.monotonic()
            try:
                fut.result(timeout=60)
                print("NO ERROR")
            except Exception as e:
                print(f"ERROR after {time.monotonic() - t:.1f}s: {e}")
            """
        )
    )
    env = dict(os.environ, HOME=str(flame_home), **rp.client_env())
    proc = subprocess.Popen([PYTHON, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "submitted"
        time.sleep(1.0)
        os.kill(rp.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        rp.stop()
    assert out.startswith("ERROR after"), out
    assert float(out.split()[2].rstrip("s:")) < 15


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
def test_connections_from_another_user_are_refused(runtime, tmp_path: Path) -> None:
    script = tmp_path / "other.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, grpc, pyarrow.flight as flight
            from flamepy.proto import frontend_pb2, frontend_pb2_grpc
            # Everything is imported as root; now become another user before any socket exists.
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel("{runtime.endpoint.split("://")[1]}"))
            try:
                stub.ListApplication(frontend_pb2.ListApplicationRequest(), timeout=10)
                print("frontend: ALLOWED")
            except grpc.RpcError as e:
                print("frontend:", e.code().name, e.details())
            try:
                list(flight.FlightClient("{runtime.cache_endpoint}").list_actions())
                print("cache: ALLOWED")
            except flight.FlightError as e:
                print("cache:", type(e).__name__, str(e).splitlines()[0])
            """
        )
    )
    proc = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, timeout=60, cwd="/")
    assert "frontend: PERMISSION_DENIED connection refused" in proc.stdout, proc.stdout + proc.stderr
    assert "cache: FlightUnauthorizedError" in proc.stdout, proc.stdout + proc.stderr
    # and the same calls from this user work
    assert _stub(runtime).ListApplication(frontend_pb2.ListApplicationRequest(), timeout=10).applications


def test_package_install_failure_fails_the_call_with_the_reason(
    tmp_path: Path, script_env: dict[str, str], runtime
) -> None:
    runtime.store.fail_unbindable_tasks = True  # the opt-in; Flame leaves the call pending
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from flamepy.runner import Runner

            def f(x):
                return x

            import flamepy

            t = time.monotonic()
            with Runner("broken-deps", dependencies=["definitely-not-a-real-pkg-xyz==1.0"]) as rr:
                svc = rr.service(f)
                try:
                    svc(1).get()
                    print("NO ERROR")
                except Exception as e:
                    # WatchTask has no events (as Flame's): the reason is in the task's own.
                    task = svc._session.get_task("1")
                    reason = [ev.message for ev in task.events if ev.code == 3][-1]
                    print(f"ERROR after {time.monotonic() - t:.1f}s: {e}: {reason}")
            """
        )
    )
    env = dict(script_env, PIP_NO_INDEX="1")
    try:
        proc = subprocess.run(
            [PYTHON, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        runtime.store.fail_unbindable_tasks = False
    out = proc.stdout
    assert out.startswith("ERROR after"), out + proc.stderr[-2000:]
    assert "return_code 10" in out and "application installation failed: install" in out
    assert "definitely-not-a-real-pkg-xyz" in out
