"""Graceful shutdown: SIGTERM/SIGINT let running tasks finish within the grace period, fail the
pending ones with a clear error, end what still runs after it, and leave nothing behind."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.reliability.relkit import (
    RuntimeChild,
    client_env,
    descendants,
    finish_client,
    instance_sockets,
    report,
    wait_for,
)

CLIENT = """
import json, os, sys, threading, time
import flame_jupyter as fj

MARKS = sys.argv[1]
SECONDS = float(sys.argv[2])

def work(i):
    import os, time
    open(os.path.join(MARKS, f"start-{i}"), "w").close()
    time.sleep(SECONDS)
    open(os.path.join(MARKS, f"end-{i}"), "w").close()
    return i * 10

rr = fj.Runner("shutdown")
svc = rr.service(work)
futures = [svc(i) for i in range(int(sys.argv[3]))]
results = {}

def get(i, f):
    try:
        results[i] = ["ok", f.get(timeout=120), time.time()]
    except Exception as e:
        results[i] = ["error", str(e), time.time()]

threads = [threading.Thread(target=get, args=(i, f)) for i, f in enumerate(futures)]
for t in threads:
    t.start()
for t in threads:
    t.join(150)
print("RESULT " + json.dumps({str(i): results.get(i) for i in range(len(futures))}), flush=True)
"""


def _client(tmp_path: Path, env: dict[str, str], seconds: float, count: int) -> tuple[subprocess.Popen, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    proc = subprocess.Popen(
        [env["PYTHON_FOR_TEST"], str(script), str(marks), str(seconds), str(count)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, marks


def _started(marks: Path) -> int:
    return len(list(marks.glob("start-*")))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_running_tasks_finish_and_fails_pending_ones(
    tmp_path: Path, flame_home: Path, sig: signal.Signals
) -> None:
    from flame_local.process import RuntimeProcess

    rp = RuntimeProcess.start(max_instances=2)  # `flame-local start --foreground`: its signal handling
    try:
        env = client_env(rp.client_env(), flame_home, PYTHON_FOR_TEST=PYTHON)
        proc, marks = _client(tmp_path, env, seconds=3.0, count=5)
        wait_for(lambda: _started(marks) == 2, 60, "2 running tasks")
        procs = descendants(rp.pid)
        socket_dir = Path(next(iter(instance_sockets(rp.pid).values()))).parent
        signalled = time.time()
        assert rp._proc is not None
        rp._proc.send_signal(sig)
        rp._proc.wait(30)
        exited = time.time() - signalled
        results = finish_client(proc, 60)
    finally:
        rp.stop()
    assert rp._proc.returncode == 0
    ok = {i: r for i, r in results.items() if r[0] == "ok"}
    failed = {i: r for i, r in results.items() if r[0] == "error"}
    assert sorted(ok) == ["0", "1"] and [r[1] for r in ok.values()] == [0, 10], results
    assert sorted(marks.glob("end-*")) == [marks / "end-0", marks / "end-1"]  # they really ran to the end
    for r in failed.values():
        assert r[1] == "the flame-local runtime stopped before this task started", r
    assert _started(marks) == 2  # the pending ones never started
    assert exited < 3.0 + 5  # the tasks' remaining time, plus a little
    assert not any(Path(f"/proc/{p}").exists() for p in procs)
    assert not Path(rp.home).exists() and not socket_dir.exists()
    report(
        f"graceful-{sig.name}",
        running_finished=len(ok),
        pending_failed_cleanly=len(failed),
        s_signal_to_exit=round(exited, 2),
        max_s_signal_to_pending_error=round(max(r[2] for r in failed.values()) - signalled, 3),
        processes_left=0,
    )


def test_tasks_still_running_after_the_grace_period_are_ended(tmp_path: Path, flame_home: Path) -> None:
    with RuntimeChild({"max_instances": 2, "shutdown_grace": 2.0}) as rt:
        env = client_env(rt.client_env(), flame_home, PYTHON_FOR_TEST=PYTHON)
        proc, marks = _client(tmp_path, env, seconds=60.0, count=1)
        wait_for(lambda: _started(marks) == 1, 60, "the task to run")
        procs = descendants(rt.pid)
        signalled = time.time()
        rt.signal(signal.SIGTERM)
        stopped = rt.wait(30)
        exited = time.time() - signalled
        results = finish_client(proc, 60)
        assert not any(Path(f"/proc/{p}").exists() for p in procs)
        assert not rt.home.exists() and not rt.socket_dir.exists()
    status, message, at = results["0"]
    assert status == "error"
    assert message == (
        "the flame-local runtime stopped: task 1 of session "
        f"{message.split('session ')[1].split(' ')[0]} was still running after the 2 s grace period and was ended"
    ), message
    assert 2.0 <= stopped["stop_seconds"] < 5.0 and exited < 8, (stopped, exited)
    report(
        "graceful-grace-expired",
        grace_s=2,
        s_stop=stopped["stop_seconds"],
        s_signal_to_client_error=round(at - signalled, 2),
        message=message,
    )


def test_stop_of_an_idle_runtime_is_quick(flame_home: Path) -> None:
    with RuntimeChild({"max_instances": 2}) as rt:
        rt.signal(signal.SIGTERM)
        stopped = rt.wait(30)
        assert not rt.home.exists() and not rt.socket_dir.exists()
    assert stopped["stop_seconds"] < 2, stopped
    report("graceful-idle", s_stop=stopped["stop_seconds"])
