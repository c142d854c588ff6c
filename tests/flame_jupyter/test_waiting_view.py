"""What a queued call waits for, in the future's view: an instance to start, or the calls ahead.

Learnt over Flame's protocol only: the task is pending (GetTask), the session has no bound executor
yet (ListExecutor: the instance is starting, e.g. installing the package) or its instances run the
calls submitted before this one.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from flame_jupyter.waiting import WAITING_FOR_INSTANCE, waiting_text
from tests.conftest import PYTHON


def test_waiting_text() -> None:
    assert waiting_text(bound=0, ahead=0) == WAITING_FOR_INSTANCE
    assert waiting_text(bound=0, ahead=3) == WAITING_FOR_INSTANCE
    assert waiting_text(bound=1, ahead=1) == "queued behind 1 call"
    assert waiting_text(bound=1, ahead=4) == "queued behind 4 calls"
    assert waiting_text(bound=2, ahead=1) == "starting on an instance"
    assert waiting_text(bound=1, ahead=0) == "starting on an instance"


SCRIPT = """
import time
import flame_jupyter as fj
from flame_jupyter.display.future_static import snapshot_text
from flame_jupyter.display.future_view import future_view

def slow(s):
    import time
    time.sleep(s)
    return s

with fj.Runner() as rr:
    svc = rr.service(slow, autoscale=False)  # one instance, started for the first call
    a = svc(3.0)
    print("first", a.state, a.waiting_for, future_view(a)["waiting"], sep="|")
    for _ in range(1200):  # at most 60 s
        if a.state == "running":
            break
        time.sleep(0.05)
    print("a", a.state, a.waiting_for, sep="|")
    b = svc(0.1)
    time.sleep(0.3)
    print("second", b.state, b.waiting_for, future_view(b)["waiting"], sep="|")
    print("text", [l for l in snapshot_text(future_view(b)).splitlines() if l.startswith("waiting")], sep="|")
    b.get(timeout=60)
    print("after", b.state, b.waiting_for, repr(future_view(b)["waiting"]), sep="|")
"""


def test_a_queued_call_says_what_it_waits_for(tmp_path: Path, script_env: dict[str, str]) -> None:
    script = tmp_path / "waiting.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=script_env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.splitlines() == [
        f"first|queued|{WAITING_FOR_INSTANCE}|{WAITING_FOR_INSTANCE}",
        "a|running|None",
        "second|queued|queued behind 1 call|queued behind 1 call",
        "text|['waiting: queued behind 1 call']",
        "after|done|None|''",
    ]
