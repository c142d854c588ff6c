"""Faults: instances killed mid-task, a runtime killed under load, bind failures, killed kernels.

Real kernels (jupyter_client) with the magics, real flamepy over gRPC/Flight, real processes,
real signals to processes these tests started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.kernel_helpers import KernelSession
from tests.reliability.relkit import (
    alive,
    client_env,
    descendants,
    finish_client,
    instance_pids,
    instance_sockets,
    kval,
    median,
    report,
    wait_for,
)

KILLS = 10

NOTEBOOK = """
def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds

class Doomed:
    def __init__(self):
        import os
        os._exit(3)          # the instance process dies while entering its session
    def ping(self):
        return "pong"
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    home = tmp_path_factory.mktemp("rel-khome")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("rel-kcwd"), extra_env=env) as k:
        k.run("%load_ext flame_jupyter")
        k.run(NOTEBOOK)
        yield k


def _running_instance(runtime, session_id: str) -> int:
    def find() -> int | None:
        for inst in runtime.manager.instances():
            if inst.session_id == session_id and inst.current_task is not None and inst.pid:
                return inst.pid
        return None

    return wait_for(find, 30, f"an instance of {session_id} running a task")


def _rtt(kernel: KernelSession) -> float:
    t = time.monotonic()
    assert kval(kernel, "1 + 1") == 2
    return time.monotonic() - t


def test_instance_sigkilled_mid_task_ten_times_through_the_magics(kernel: KernelSession, runtime) -> None:
    kernel.run("%flame_service napper = nap")
    sid = kval(kernel, "napper.session_id")
    to_error, recover, rtts, pids = [], [], [], set()
    for i in range(KILLS):
        kernel.run("f = napper(60)")
        pid = _running_instance(runtime, sid)
        assert pid not in pids, "a killed instance was reused"
        pids.add(pid)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        state, error, finished_at = kval(kernel, "[f.wait(30), (f.state, str(f.error), f.finished_at)]")[1]
        assert state == "failed", (i, state, error)
        assert f"instance process {pid} was killed by SIGKILL while running task" in error, error
        assert "the session continues on a fresh instance" in error
        to_error.append(finished_at - killed_at)
        rtts.append(_rtt(kernel))
        t = time.monotonic()
        assert kval(kernel, f"napper({i % 3}).get(timeout=60)") == i % 3
        recover.append(time.monotonic() - t)
        live = {inst.pid for inst in runtime.manager.instances() if inst.session_id == sid}
        assert pid not in live
    status = runtime.store.get_session(sid).status
    assert (status.failed, status.succeed, status.pending, status.running) == (KILLS, KILLS, 0, 0)
    assert max(to_error) < 5 and max(rtts) < 2, (to_error, rtts)
    kernel.run("napper.close()")
    report(
        "sigkill-mid-task",
        kills=KILLS,
        failed_cleanly=len(to_error),
        median_s_to_error=median(to_error),
        max_s_to_error=round(max(to_error), 3),
        median_s_next_call_on_fresh_instance=median(recover),
        max_kernel_rtt_s=round(max(rtts), 3),
    )


def test_instance_exiting_during_session_enter_is_a_clear_error(kernel: KernelSession, runtime) -> None:
    runtime.store.fail_unbindable_tasks = True  # RuntimeSettings' opt-in; Flame leaves the call pending
    kernel.run("%flame_service doomed = Doomed")
    sid = kval(kernel, "doomed.session_id")
    t = time.monotonic()
    try:
        code = "f = doomed.ping()\n[f.wait(90), (f.state, str(f.error))]"
        state, error = kval(kernel, code, timeout=120)[1]
    finally:
        runtime.store.fail_unbindable_tasks = False
    elapsed = time.monotonic() - t
    assert state == "failed"
    assert f"no executor could be bound to session {sid} after 5 attempts" in error, error
    assert "failed to bind session with return_code 12: on_session_enter failed: exited with code 3" in error
    assert "RuntimeWarning" not in error  # runpy's import warning no longer hides the real stderr
    events = [e.code for e in runtime.store.get_session(sid).status.events]
    assert events == [1001] * 5 + [1002], events
    t2 = time.monotonic()
    again = kval(kernel, "g = doomed.ping()\n[g.wait(30), g.state]")[1]
    assert again == "failed" and time.monotonic() - t2 < 5
    assert _rtt(kernel) < 2
    kernel.run("doomed.close()")
    report("exit-during-session-enter", s_to_error=round(elapsed, 2), events="5x1001 + 1002")


def test_package_that_fails_to_install_is_a_clear_error(
    kernel: KernelSession, runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the in-process runtime's pip: offline, fails at once
    t = time.monotonic()
    state, error, sid = kval(
        kernel,
        "import flame_jupyter as fj\nbad = fj.Runner(dependencies=['definitely-not-a-real-pkg-xyz==1.0'])\n"
        "bsvc = bad.service(nap)\nf = bsvc(0)\n[f.wait(120), (f.state, str(f.error), bsvc.session_id)]",
        timeout=180,
    )[1]
    elapsed = time.monotonic() - t
    assert state == "failed"
    assert "return_code 10: application installation failed: install" in error, error
    assert "definitely-not-a-real-pkg-xyz" in error
    events = [e.code for e in runtime.store.get_session(sid).status.events]
    assert events == [1001] * 5 + [1002], events
    kernel.run("bad.close()")
    assert _rtt(kernel) < 2
    report("package-install-fails", s_to_error=round(elapsed, 2), events="5x1001 + 1002")


RUNTIME_KILL_CLIENT = """
import json, sys
import flame_jupyter as fj

def work(i):
    import time
    time.sleep(60)
    return i

rr = fj.Runner("killed-runtime")
svc = rr.service(work)
futures = [svc(i) for i in range(20)]
print("SUBMITTED", flush=True)
sys.stdin.readline()                      # the test kills the runtime, then says "go"
for f in futures:
    f.wait(60)                            # bounded: a hang shows as futures not done
print("RESULT " + json.dumps({
    "finished": [f.finished_at for f in futures],
    "states": [f.state for f in futures],
    "errors": sorted({str(f.error) for f in futures}),
}), flush=True)
"""


def test_runtime_sigkilled_with_tasks_in_flight_fails_them_all_within_seconds(
    tmp_path: Path, flame_home: Path
) -> None:
    from flame_local.process import RuntimeProcess

    rp = RuntimeProcess.start(max_instances=2)
    sockets: dict[int, str] = {}
    try:
        script = tmp_path / "client.py"
        script.write_text(RUNTIME_KILL_CLIENT)
        proc = subprocess.Popen(
            [PYTHON, str(script)],
            cwd=tmp_path,
            env=client_env(rp.client_env(), flame_home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "SUBMITTED"
        sockets = wait_for(
            lambda: instance_sockets(rp.pid) if len(instance_sockets(rp.pid)) == 2 else None,
            30,
            "2 running instances",
        )
        instances = descendants(rp.pid)
        killed_at = time.time()
        os.kill(rp.pid, signal.SIGKILL)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = finish_client(proc, 60)
    finally:
        rp.stop()
        # A SIGKILLed runtime cannot clean up (docs/reliability.md, Limits): remove what it left.
        shutil.rmtree(rp.home, ignore_errors=True)
        for path in sockets.values():
            shutil.rmtree(Path(path).parent, ignore_errors=True)
    delays = [f - killed_at for f in result["finished"]]
    assert result["states"] == ["failed"] * 20, result
    assert max(delays) < 5, delays
    for err in result["errors"]:
        # A call sent alone was waiting for its task; one still queued in the kernel for a batch
        # (flame_jupyter/pipes.py) was never sent.
        assert err.startswith(
            (
                "lost the connection to Flame while waiting for this task",
                "lost the connection to Flame before this call was sent",
            )
        ), err
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in instances), 10, "instances to die")
    report(
        "runtime-sigkilled-20-tasks",
        failed=len(delays),
        max_s_to_error=round(max(delays), 3),
        errors=result["errors"],
        instances_left=0,
    )


# -- the kernel dies --------------------------------------------------------------------------------------
def _embedded_kernel(tmp_path: Path) -> KernelSession:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "FLAME_ENDPOINT": "", "FLAME_CACHE_ENDPOINT": ""}
    return KernelSession(cwd=tmp_path, extra_env=env)


def _what_the_kernel_started(k: KernelSession) -> dict:
    k.run("%load_ext flame_jupyter")
    k.run(NOTEBOOK + "\n%flame_service --no-autoscale --warmup 2 napper = nap\nnapper(0).get(timeout=60)")
    rt_pid = kval(k, "from flame_jupyter import connection\nconnection.current().runtime.pid")
    # The interrupt button signals the kernel's whole process group: the runtime must not care.
    msg_id = k.kc.execute("napper(60).get()")
    time.sleep(1.5)
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = k.kc.get_shell_msg(timeout=60)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    # ipykernel aborts requests that arrive right after an error: wait until it takes them again
    wait_for(lambda: k.execute("0").status == "ok", 10, "the kernel to take requests again", 0.2)
    assert kval(k, "napper(1).get(timeout=60)") == 1
    assert kval(k, "connection.current().runtime.pid") == rt_pid
    k.run("f = napper(60)")  # one task running, one idle instance
    info = kval(
        k,
        "from flame_jupyter import connection\nrt = connection.current().runtime\n"
        "{'pid': rt.pid, 'home': rt.home, 'log': rt.log_path, 'endpoint': rt.endpoint, 'cache': rt.cache_endpoint}",
    )
    kernel_pid = k.km.provisioner.process.pid
    wait_for(lambda: len(instance_pids(info["pid"])) == 2, 30, "2 instances")
    procs = descendants(kernel_pid)
    sockets = set(instance_sockets(info["pid"]).values())
    info.update(kernel_pid=kernel_pid, procs=procs, socket_dir=str(Path(next(iter(sockets))).parent))
    return info


def _gone(info: dict, timeout: float = 30) -> float:
    """Wait until everything the kernel started is gone; seconds it took."""
    t = time.monotonic()
    left = lambda: {p: _cmdline(p) for p in info["procs"] if alive(p)}  # noqa: E731
    try:
        wait_for(lambda: not left(), timeout, "no process left")
    except AssertionError:
        raise AssertionError(f"still running after {timeout}s: {left()}") from None
    for path in (info["home"], info["socket_dir"], str(Path(info["log"]).parent)):
        wait_for(lambda path=path: not Path(path).exists(), 10, f"{path} removed")
    for endpoint in (info["endpoint"], info["cache"]):
        port = int(endpoint.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return time.monotonic() - t


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


@pytest.mark.parametrize("how", ["sigkill", "restart", "restart-graceful"])
def test_dead_kernel_takes_its_runtime_instances_sockets_and_files_along(tmp_path: Path, how: str) -> None:
    with _embedded_kernel(tmp_path) as k:
        info = _what_the_kernel_started(k)
        assert len(info["procs"]) >= 3  # the runtime, 2 instances (+ a warm interpreter, maybe)
        t = time.monotonic()
        if how == "sigkill":
            os.kill(info["kernel_pid"], signal.SIGKILL)
            _gone(info)
            took = time.monotonic() - t
        else:
            # now=True: Jupyter kills the kernel's process group at once; now=False (the restart
            # button): a shutdown request first, a kill only if the kernel does not exit in time.
            k.km.restart_kernel(now=how == "restart")
            _gone(info)
            took = time.monotonic() - t
            k.kc.wait_for_ready(timeout=60)
            # The new kernel starts clean: not connected, and a fresh runtime when asked.
            assert kval(k, "import flame_jupyter.connection as c\nc.current() is None") is True
            k.run("%load_ext flame_jupyter")
            fresh = kval(k, "from flame_jupyter import connection\nconnection.current().runtime.pid")
            assert fresh != info["pid"]
            assert kval(k, "import flamepy\nlen(flamepy.list_sessions())") == 0
    report(f"kernel-{how}", processes_gone=len(info["procs"]), s_until_all_gone=round(took, 2))
