"""Load: many tasks in flight at once over several services; many sessions opened and closed.

Always on: 10,000 tasks and 100 sessions (about 2 minutes). ``FLAME_SLOW_TESTS=1``: a soak of
30,000 tasks and 300 sessions.
The runtime runs in its own process (as the notebook's embedded one does), the client is a real
SDK script; the test samples both processes' memory from outside.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.reliability.relkit import (
    SLOW,
    RssSampler,
    RuntimeChild,
    children,
    client_env,
    entries,
    fd_count,
    finish_client,
    instance_sockets,
    report,
    rss_mb,
    wait_for,
)

TASKS = 30_000 if SLOW else 10_000
SESSIONS = 300 if SLOW else 100

LOAD_CLIENT = """
import json, os, sys, time
import flamepy
import flame_jupyter as fj

N = int(sys.argv[1])
GATE = sys.argv[2]

def _gate():
    import os, time
    t = time.monotonic()
    while not os.path.exists(GATE) and time.monotonic() - t < 600:
        time.sleep(0.01)

def square(x):
    _gate()
    return x * x

def negate(x):
    _gate()
    return -x

def label(x):
    _gate()
    return f"item-{x}"

class Scaler:
    def __init__(self):
        self.k = 3
    def scale(self, x):
        _gate()
        return self.k * x

expected = [lambda i: i * i, lambda i: -i, lambda i: f"item-{i}", lambda i: 3 * i]
with fj.Runner("load") as rr:
    svcs = [rr.service(square), rr.service(negate), rr.service(label), rr.service(Scaler)]
    calls = [svcs[0], svcs[1], svcs[2], svcs[3].scale]
    t0 = time.monotonic()
    futures = [calls[i % 4](i) for i in range(N)]
    submitted = time.monotonic() - t0
    sessions = [flamepy.get_session(s.session_id) for s in svcs]
    in_flight = sum(s.pending + s.running for s in sessions)
    done_early = sum(s.succeed + s.failed for s in sessions)
    open(GATE, "w").close()
    t1 = time.monotonic()
    wrong = lost = 0
    for i, f in enumerate(futures):
        if not f.wait(600):
            lost += 1
        elif f.get() != expected[i % 4](i):
            wrong += 1
    drained = time.monotonic() - t1
    states = [flamepy.get_session(s.session_id) for s in svcs]
    print("RESULT " + json.dumps({
        "submitted_s": submitted, "drained_s": drained, "in_flight": in_flight, "done_early": done_early,
        "wrong": wrong, "lost": lost, "succeed": sum(s.succeed for s in states),
        "failed": sum(s.failed for s in states),
    }), flush=True)
"""


@pytest.mark.timeout(1200)
def test_tasks_over_four_services_all_in_flight_at_once(tmp_path: Path, flame_home: Path) -> None:
    from flame_local.process import RuntimeProcess

    rp = RuntimeProcess.start(max_instances=2)
    try:
        script = tmp_path / "load.py"
        script.write_text(LOAD_CLIENT)
        # Every call its own task, all in flight at once: the runtime's load, not the kernel's batching.
        env = client_env(rp.client_env(), flame_home, FLAME_JUPYTER_COALESCE="0")
        base = {"runtime": rss_mb(rp.pid)}
        t = time.monotonic()
        proc = subprocess.Popen(
            [PYTHON, str(script), str(TASKS), str(tmp_path / "gate")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        groups = {
            "runtime": lambda: [rp.pid],
            "client": lambda: [proc.pid],
            "instances": lambda: children(rp.pid),
        }
        with RssSampler(groups) as rss:
            result = finish_client(proc, 1100)
        total = time.monotonic() - t
    finally:
        rp.stop()
    assert result["in_flight"] == TASKS and result["done_early"] == 0, result
    assert (result["wrong"], result["lost"], result["failed"]) == (0, 0, 0), result
    assert result["succeed"] == TASKS
    # Bounded: the runtime keeps every task (and the cache every result) until the session is
    # forgotten; measured ~10 KB a task (docs/reliability.md). These ceilings leave room.
    assert rss.peak["runtime"] < 150 + TASKS * 0.025, rss.peak
    assert rss.peak["client"] < 200 + TASKS * 0.03, rss.peak
    report(
        "load-tasks",
        tasks=TASKS,
        services=4,
        in_flight_at_once=result["in_flight"],
        correct=result["succeed"] - result["wrong"],
        lost=result["lost"],
        s_submit=round(result["submitted_s"], 1),
        s_drain=round(result["drained_s"], 1),
        s_total=round(total, 1),
        tasks_per_s=round(TASKS / result["drained_s"]),
        runtime_rss_mb_idle=round(base["runtime"]),
        runtime_rss_mb_peak=round(rss.peak["runtime"]),
        client_rss_mb_peak=round(rss.peak["client"]),
        instances_rss_mb_peak=round(rss.peak["instances"]),
    )


LOOP_CLIENT = """
import json, sys
import flame_jupyter as fj

N = int(sys.argv[1])
CHECKPOINTS = {int(c) for c in sys.argv[2].split(",")}

def square(x):
    return x * x

def checkpoint(name):
    print(f"CHECKPOINT {name}", flush=True)
    sys.stdin.readline()

checkpoint("before")
rr = fj.Runner("loop")
for i in range(1, N + 1):
    svc = rr.service(square)
    assert svc(i).get(timeout=60) == i * i
    svc.close()
    if i in CHECKPOINTS:
        checkpoint(i)
rr.close()
checkpoint("after")
print("RESULT " + json.dumps({"sessions": N}), flush=True)
"""


def _settled(rt: RuntimeChild) -> dict[str, int]:
    """Once no instance is bound and the warm interpreter is back: what the runtime holds."""
    wait_for(lambda: not instance_sockets(rt.pid), 30, "instances to unbind")
    try:
        wait_for(lambda: len(children(rt.pid)) == 1, 10, "the warm interpreter")
    except AssertionError:
        pass
    time.sleep(0.5)  # a scheduling pass (it removes forgotten sessions' logs)
    procs = children(rt.pid)
    fds = []
    for _ in range(5):  # the fewest over a second: a leak stays, a connection closing does not
        fds.append(fd_count(rt.pid) + sum(fd_count(p) for p in children(rt.pid)))
        time.sleep(0.2)
    return {
        "processes": len(procs),
        "fds": min(fds),
        "socket_files": len(os.listdir(rt.socket_dir)),
        "home_entries": len(entries(rt.home)),
        "rss_mb": round(rss_mb(rt.pid)),
    }


@pytest.mark.timeout(900)
def test_sessions_opened_and_closed_in_a_loop_leave_nothing_behind(tmp_path: Path, flame_home: Path) -> None:
    warm_at = 15
    marks = sorted({warm_at, SESSIONS // 2, SESSIONS})
    # Closed sessions are remembered (GetSession works) up to max_closed_sessions; their logs as long.
    with RuntimeChild({"max_instances": 2, "max_closed_sessions": 10}) as rt:
        script = tmp_path / "loop.py"
        script.write_text(LOOP_CLIENT)
        proc = subprocess.Popen(
            [PYTHON, str(script), str(SESSIONS), ",".join(map(str, marks))],
            cwd=tmp_path,
            env=client_env(rt.client_env(), flame_home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        snaps: dict[str, dict[str, int]] = {}
        listing: dict[str, list[str]] = {}
        t = time.monotonic()
        for _ in range(len(marks) + 2):
            line = proc.stdout.readline()
            assert line.startswith("CHECKPOINT "), line + (
                proc.stderr.read() if proc.poll() is not None else ""
            )
            snaps[line.split()[1]] = _settled(rt)
            listing[line.split()[1]] = sorted(entries(rt.home))
            proc.stdin.write("go\n")
            proc.stdin.flush()
        elapsed = time.monotonic() - t
        finish_client(proc, 60)
    first, last = snaps[str(warm_at)], snaps[str(SESSIONS)]
    for key in ("processes", "fds", "socket_files", "home_entries"):
        assert first[key] == last[key], (key, snaps, listing)
    assert last["socket_files"] == 0
    assert snaps["after"]["home_entries"] == snaps["before"]["home_entries"], (snaps, listing)
    assert snaps["after"]["processes"] == snaps["before"]["processes"]
    report(
        "sessions-loop",
        sessions=SESSIONS,
        s_total=round(elapsed, 1),
        **{f"at_{k}": v for k, v in snaps.items()},
    )
