"""Each Runner owns and cleans exactly its own sessions and objects (issue 13, faults 2 and 6).

Two processes with ``Runner("<same name>")`` on one shared runtime: A's close leaves B's
finished, unfetched results and sessions alone and raises nothing; B's close (the last user)
closes its sessions and unregisters the app. ``Service.close()`` while a call runs does not
pretend: it cancels, waits (bounded), closes, and if the close failed it stays open and a
second ``close()`` retries. Ctrl-C during ``get()`` in a script exits promptly and leaves
nothing open. Checked against the runtime's session and application lists.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import flamepy
import pytest

import flame_jupyter as fj
from flame_jupyter.cleanup import CleanupError
from tests.polling import wait_for


def _open(app: str) -> list[str]:
    return [
        s.id for s in flamepy.list_sessions() if s.application == app and s.state == flamepy.SessionState.OPEN
    ]


def _running(session_id: str) -> int:
    return flamepy.get_session(session_id).running


def _apps() -> set[str]:
    return {a.name for a in flamepy.list_applications()}


def _wait_file(path: Path, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    wait_for(lambda: path.exists() or proc.poll() is not None, seconds, path.name, interval=0.1)
    assert path.exists(), proc.communicate(timeout=10)


A = """
import sys, time
from pathlib import Path
import flame_jupyter as fj
d = Path(sys.argv[1])
rr = fj.Runner(sys.argv[2])
sq = rr.service(lambda x: x * x)
assert sq(3).get() == 9
big = list(range(200_000))
assert rr.service(lambda v: len(v))(big).get() == 200_000      # a shared (offloaded) object
(d / "a-ready").write_text("")
while not (d / "b-ready").exists():
    time.sleep(0.05)
rr.close()
(d / "a-closed").write_text("")
print("A closed")
"""

B = """
import sys, time
from pathlib import Path
import flame_jupyter as fj
d = Path(sys.argv[1])
while not (d / "a-ready").exists():
    time.sleep(0.05)
rr = fj.Runner(sys.argv[2])
big = list(range(100_000))
svc = rr.service(lambda i, v: i + len(v))
futs = [svc(i, big) for i in range(5)]
fj.wait(futs)                                                   # finished, not fetched
(d / "b-ready").write_text("")
while not (d / "checked").exists():   # the test looked at the runtime after A's close
    time.sleep(0.05)
print("B results", [f.get() for f in futs])
print("B again", svc(7, big).get())
rr.close()
print("B closed")
"""


def test_two_processes_with_one_app_name_clean_only_their_own(tmp_path: Path, runtime, script_env) -> None:
    app = f"shared-{uuid.uuid4().hex[:6]}"
    (tmp_path / "a.py").write_text(A)
    (tmp_path / "b.py").write_text(B)
    run = [sys.executable]
    pa = subprocess.Popen(
        [*run, str(tmp_path / "a.py"), str(tmp_path), app],
        env=script_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pb = subprocess.Popen(
        [*run, str(tmp_path / "b.py"), str(tmp_path), app],
        env=script_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_file(tmp_path / "a-closed", pa)
        a_out, a_err = pa.communicate(timeout=60)
        assert pa.returncode == 0 and "A closed" in a_out, a_err
        assert "Traceback" not in a_err and "has open sessions" not in a_err, a_err
        assert app in _apps() and len(_open(app)) == 1  # B's session and the app stay for B
        (tmp_path / "checked").write_text("")
        b_out, b_err = pb.communicate(timeout=120)
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
    assert pb.returncode == 0, b_err
    assert "B results [100000, 100001, 100002, 100003, 100004]" in b_out, b_out + b_err
    assert "B again 100007" in b_out and "B closed" in b_out
    assert "Traceback" not in b_err, b_err
    assert _open(app) == [] and app not in _apps()


def _notebook_function(source: str, name: str) -> Callable[..., object]:
    """A function as a notebook defines it (``__main__``), so it travels by value."""
    ns: dict[str, object] = {"__name__": "__main__"}
    exec(source, ns)
    return ns[name]  # type: ignore[return-value]


# One C call: a cancel needs the instance's grace period (seconds) to end it.
SLOW = "def slow(seconds):\n    import time\n    time.sleep(seconds)\n    return seconds\n"


def test_service_close_while_a_call_runs_retries_after_a_failed_close(runtime) -> None:
    app = f"svcclose-{uuid.uuid4().hex[:6]}"
    rr = fj.Runner(app)
    try:
        svc = rr.service(_notebook_function(SLOW, "slow"))
        fut = svc(60)
        wait_for(lambda: _running(svc.session_id) == 1, 60, "the call to run", interval=0.1)
        with pytest.raises(CleanupError, match="Cannot close session with running tasks") as e:
            svc.close(timeout=0.3)
        assert svc.session_id in str(e.value)
        assert not svc.closed and _open(app) == [svc.session_id]  # not marked closed
        svc.close()  # the retry: the cancel has ended the call by now or within the bound
        assert svc.closed and _open(app) == []
        assert fut.cancelled()
    finally:
        rr.close()
    assert app not in _apps()


CTRL_C = """
import sys, time
import flame_jupyter as fj
def spin():
    import time
    while True:
        time.sleep(0.02)
rr = fj.Runner(sys.argv[1])
f = rr.service(spin)()
while f.state != "running":
    time.sleep(0.05)
print("waiting", flush=True)
f.get()
"""


def test_ctrl_c_during_get_in_a_script_exits_promptly_and_leaves_nothing_open(
    tmp_path: Path, runtime, script_env
) -> None:
    app = f"ctrlc-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "ctrlc.py"
    script.write_text(textwrap.dedent(CTRL_C))
    p = subprocess.Popen(
        [sys.executable, str(script), app],
        env=script_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "waiting"
        assert len(_open(app)) == 1
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        took = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read() if p.stderr else ""
    assert "KeyboardInterrupt" in err and "could not close" not in err, err
    assert took < 8, f"exit took {took:.1f} s"
    assert _open(app) == [] and app not in _apps()
