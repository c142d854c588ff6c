"""Kernel cleanup on a shared runtime, checked against the runtime's session and app lists.

A kernel restarted with calls running, a SIGKILLed kernel (the next ``%load_ext`` on this host
closes what it left), and ``%flame cleanup`` (``--dry-run`` first) by hand. The runtime is the
test session's, which the kernels reach as a cluster (``FLAME_ENDPOINT``), as two notebooks
share a real Flame.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import flamepy

from tests.kernel_helpers import KernelSession
from tests.polling import wait_for

SPIN = "def spin():\n    import time\n    while True:\n        time.sleep(0.02)\n"


def _env(home: Path, runtime) -> dict[str, str]:
    return {"HOME": str(home), **runtime.client_env()}


def _ok(k: KernelSession, code: str, timeout: float = 120):
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r


def _open(app: str) -> list[flamepy.Session]:
    return [
        s for s in flamepy.list_sessions() if s.application == app and s.state == flamepy.SessionState.OPEN
    ]


def _apps() -> set[str]:
    return {a.name for a in flamepy.list_applications()}


def _start_running_calls(k: KernelSession, app: str) -> None:
    _ok(k, f"%config FlameMagics.app = {app!r}")
    _ok(k, SPIN + "%flame_service spinner = spin\nfs = [spinner() for _ in range(3)]")
    _ok(k, "%%flame --no-block\nimport time\nwhile True:\n    time.sleep(0.02)")
    wait_for(lambda: sum(s.running for s in _open(app)) >= 2, 60, "the calls to start")
    assert len(_open(app)) == 2 and app in _apps()


def test_restart_with_running_calls_closes_sessions_and_app(tmp_path: Path, runtime) -> None:
    app = f"restart-{uuid.uuid4().hex[:6]}"
    with KernelSession(cwd=tmp_path, extra_env=_env(tmp_path, runtime)) as k:
        _ok(k, "%load_ext flame_jupyter")
        _start_running_calls(k, app)
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        wait_for(lambda: not _open(app) and app not in _apps(), 30, f"{app}'s sessions and app to close")


def test_unload_with_running_calls_closes_everything(tmp_path: Path, runtime) -> None:
    app = f"unload-{uuid.uuid4().hex[:6]}"
    with KernelSession(cwd=tmp_path, extra_env=_env(tmp_path, runtime)) as k:
        _ok(k, "%load_ext flame_jupyter")
        _start_running_calls(k, app)
        r = _ok(k, "%unload_ext flame_jupyter", timeout=60)
        assert "could not close" not in r.stderr, r.stderr
        assert not _open(app) and app not in _apps()
        states = _ok(k, "print(sorted({f.state for f in fs}))").stdout
        assert states.strip() == "['cancelled']", states


def test_killed_kernel_leftovers_are_closed_by_the_next_load_ext(tmp_path: Path, runtime) -> None:
    app = f"killed-{uuid.uuid4().hex[:6]}"
    with KernelSession(cwd=tmp_path, extra_env=_env(tmp_path, runtime)) as a:
        _ok(a, "%load_ext flame_jupyter")
        _start_running_calls(a, app)
        left = {s.id for s in _open(app)}
        pid = a.km.provisioner.process.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 20, f"process {pid} to end")
    time.sleep(1)
    assert {s.id for s in _open(app)} == left, "a killed kernel left nothing: the test proves nothing"
    assert all(f"-{pid}-" in sid for sid in left)  # each session names its kernel
    with KernelSession(cwd=tmp_path, extra_env=_env(tmp_path, runtime)) as b:
        r = _ok(b, "%load_ext flame_jupyter", timeout=60)
        assert "left on Flame by dead kernels" in r.stdout and f"pid {pid}" in r.stdout, r.stdout
        assert not _open(app) and app not in _apps(), r.stdout + r.stderr


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_flame_cleanup_lists_then_closes_what_a_dead_script_left(tmp_path: Path, runtime, script_env) -> None:
    app = f"bycleanup-{uuid.uuid4().hex[:6]}"
    with KernelSession(cwd=tmp_path, extra_env=_env(tmp_path, runtime)) as k:
        _ok(k, "%load_ext flame_jupyter")
        script = tmp_path / "dies.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import os, signal, time
                import flame_jupyter as fj
                {SPIN.replace(chr(10), chr(10) + " " * 16)}
                rr = fj.Runner({app!r})
                svc = rr.service(spin)
                f = svc()
                while f.state != "running":
                    time.sleep(0.05)
                print(svc.session_id, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
                """
            )
        )
        p = subprocess.run(
            [sys.executable, str(script)], env=script_env, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == -signal.SIGKILL, p.stderr
        sid = p.stdout.strip()
        assert [s.id for s in _open(app)] == [sid]
        dry = _ok(k, "%flame cleanup --dry-run")
        assert sid in dry.stdout and "nothing closed" in dry.stdout, dry.stdout
        assert [s.id for s in _open(app)] == [sid] and app in _apps()
        done = _ok(k, "%flame cleanup", timeout=60)
        assert sid in done.stdout and "closed 1 session" in done.stdout, done.stdout + done.stderr
        assert not _open(app) and app not in _apps()
        again = _ok(k, "%flame cleanup")
        assert "nothing left" in again.stdout
