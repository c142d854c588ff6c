"""Warm interpreters: instances start from them, behave as cold ones, and die with the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

from flame_local import LocalRuntime
from flame_local.executors.warm import WarmPool
from tests.polling import wait_for


def _invoke(stub, sid: str, payload: dict) -> types_pb2.Task:
    task = stub.CreateTask(
        frontend_pb2.CreateTaskRequest(
            task=types_pb2.TaskSpec(session_id=sid, input=json.dumps(payload).encode())
        )
    )
    *_, last = stub.WatchTask(
        frontend_pb2.WatchTaskRequest(session_id=sid, task_id=task.metadata.id), timeout=60
    )
    return last


def test_instance_from_warm_interpreter_runs_and_everything_ends_on_stop(flame_home: Path) -> None:
    rt = LocalRuntime(max_instances=2, warm_instances=1).start()
    try:
        assert rt.manager is not None and rt.manager.warm is not None
        warm_pids = wait_for(rt.manager.warm.pids, 30, "a warm interpreter")
        stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(rt.endpoint.split("://")[1]))
        stub.CreateSession(
            frontend_pb2.CreateSessionRequest(
                session_id="w1", session=types_pb2.SessionSpec(application="flmping")
            )
        )
        done = _invoke(stub, "w1", {"duration": 1})
        assert done.status.state == types_pb2.TaskState.Succeed
        assert json.loads(done.spec.output)["message"].startswith("Completed on <")
        (inst,) = [i for i in rt.manager.instances() if i.session_id == "w1"]
        assert inst.warm and inst.pid == warm_pids[0]
        # the instance's own log files and working directory were used
        log_dir = rt.home / "logs" / "sessions" / "w1"
        assert (log_dir / f"{inst.id}.err").exists()
        refill = wait_for(
            lambda: [p for p in rt.manager.warm.pids() if p != inst.pid], 30, "a warm interpreter"
        )
        everything = [inst.pid, *refill]
    finally:
        rt.stop()
    for pid in everything:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_only_plain_module_commands_of_the_same_interpreter_are_eligible() -> None:
    pool = WarmPool("/usr/bin/python3", 1, {"PATH": "/bin"})
    assert pool.eligible(["/usr/bin/python3", "-m", "flamepy.runner.runpy"], {"PATH": "/x"})
    assert not pool.eligible(["/usr/bin/python3", "script.py"], {})
    assert not pool.eligible(["/other/python", "-m", "x"], {})
    assert not pool.eligible(["/usr/bin/python3", "-m", "x"], {"PYTHONHASHSEED": "0"})
    assert pool.eligible(["/usr/bin/python3", "-m", "x"], {"PYTHONPATH": "/pkg"})
    assert not WarmPool("/usr/bin/python3", 0, {}).eligible(["/usr/bin/python3", "-m", "x"], {})
