"""Round 2, faults 10 and 13 (second half): `flame-local start` is exclusive, and what a SIGKILLed
runtime leaves (home, socket dir, ready dir, runtime.json, flame.yaml) is swept by the next
`status`/`start`, and only what that runtime created."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON
from tests.reliability.relkit import REPO, alive, report, wait_for


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    for var in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
        env.pop(var, None)
    return env


def _cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flame_local.cli", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runtime_pids() -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"flame_local.cli" in cmd and b"--foreground" in cmd:
                out.add(int(entry.name))
    return out


def test_two_simultaneous_starts_one_runtime(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    before = _runtime_pids()
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "flame_local.cli", "start", "--max-instances", "1"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
        codes = [p.returncode for p in procs]
        state = json.loads((home / ".flame" / "local" / "runtime.json").read_text())
        started = _runtime_pids() - before
    finally:
        stopped = _cli(home, "stop")
        for pid in _runtime_pids() - before:  # a second runtime nobody can stop (the fault)
            os.kill(pid, signal.SIGKILL)
    assert sorted(codes) == [0, 1], (codes, outs)
    loser = outs[codes.index(1)]
    assert f"flame-local is already running (pid {state['pid']})" in loser, loser
    assert started == {state["pid"]}, (started, state)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not alive(state["pid"])
    report("concurrent-start", starts=2, runtimes=len(started), loser=loser.strip().splitlines()[0])


def test_status_and_start_sweep_what_a_killed_runtime_left(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    started = _cli(home, "start", "--max-instances", "1")
    assert started.returncode == 0, started.stdout + started.stderr
    state_file = home / ".flame" / "local" / "runtime.json"
    yaml = home / ".flame" / "flame.yaml"
    state = json.loads(state_file.read_text())
    try:
        left = {
            "home": Path(state["home"]),
            "socket dir": Path(state["socket_dir"]),
            "ready dir": Path(state["log"]).parent,
            "runtime.json": state_file,
            "flame.yaml": yaml,
        }
        assert all(p.exists() for p in left.values()), left
        os.kill(state["pid"], signal.SIGKILL)
        wait_for(lambda: not alive(state["pid"]), 10, "the runtime to die")
        assert all(p.exists() for p in left.values())  # nothing cleaned up after a SIGKILL
        t = time.monotonic()
        status = _cli(home, "status")
        took = time.monotonic() - t
        remaining = sorted(name for name, p in left.items() if p.exists())
    finally:
        if alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)
    assert status.returncode == 3, status.stdout + status.stderr
    assert f"removed what the stopped runtime (pid {state['pid']}) left" in status.stdout, status.stdout
    assert remaining == [], remaining
    again = _cli(home, "start", "--max-instances", "1")
    try:
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        assert _cli(home, "stop").returncode == 0
    report("stale-runtime-swept", left_after_sigkill=len(left), left_after_status=0, status_s=round(took, 2))


def test_a_stale_record_never_sweeps_what_the_runtime_did_not_create(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".flame" / "local").mkdir(parents=True)
    mine = tmp_path / "my-project"  # a --home the user chose: not the runtime's to remove
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    fake_ready = tmp_path / "not-a-ready-dir"
    fake_ready.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = {"pid": dead.pid, "endpoint": "http://127.0.0.1:1", "cache_endpoint": "grpc://127.0.0.1:2",
             "home": str(mine), "temp_home": False, "socket_dir": str(mine), "log": str(fake_ready / "runtime.log")}  # fmt: skip
    (home / ".flame" / "local" / "runtime.json").write_text(json.dumps(state))
    (home / ".flame" / "flame.yaml").write_text("current-context: mine\n")  # the user's own
    status = _cli(home, "status")
    assert status.returncode == 3, status.stdout + status.stderr
    assert (mine / "keep.txt").exists() and fake_ready.exists()
    assert (home / ".flame" / "flame.yaml").read_text() == "current-context: mine\n"
    assert not (home / ".flame" / "local" / "runtime.json").exists()
