"""Remote exceptions on any Flame: Flame v0.6.0's WatchTask carries no task events (issue 18).

The embedded runtime is faithful there (tests/conformance/test_flame_fidelity.py), so flamepy alone
reports "Task failed without error message"; flame_jupyter reads the failed task's events with
GetTask and still raises the remote type with its message and traceback, and the future's view and
the panel's failure list show them.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from tests.conftest import PYTHON

SCRIPT = """
import json
import flame_jupyter as fj
from flame_jupyter.views import future_snapshot
from flame_jupyter.status_panel import recent_failures

def parse(text):
    return float(text)  # the line the traceback must show

out = {}
with fj.Runner("errors-any-flame") as rr:
    svc = rr.service(parse)
    f = svc("twelve dollars")
    try:
        f.get(timeout=60)
    except ValueError as e:
        out["type"] = type(e).__name__
        out["message"] = str(e)
        out["traceback_has_line"] = "float(text)  # the line the traceback must show" in e.remote_traceback
        out["remote_type"] = e.remote_type
    out["state"] = f.state
    view = future_snapshot(f)
    out["view"] = [view["error_type"], view["error_message"], "float(text)" in view["error_traceback"]]
    out["view_tb"] = view["error_traceback"][-600:]
    failure = recent_failures()[0]
    out["panel"] = [failure["error_type"], failure["message"], "float(text)" in failure["traceback"]]

    # The same failure through plain flamepy: the runtime must be the faithful one.
    import flamepy
    from flamepy.core.client import ConnectionInstance
    ssn = flamepy.open_session(f.session_id)
    task = ssn.create_task(b"not a pickled call")
    final = list(ssn.watch_task(task.id))[-1]
    out["watched_events"] = len(final.events)
print("RESULT " + json.dumps(out))
"""


def test_remote_value_error_arrives_whole_through_a_faithful_runtime(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    script = tmp_path / "errors.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=script_env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    message = "could not convert string to float: 'twelve dollars'"
    assert out["watched_events"] == 0  # WatchTask as Flame's: no events to read the error from
    assert out["type"] == "ValueError" and out["remote_type"] == "ValueError"
    assert out["message"] == message
    assert out["traceback_has_line"] is True
    assert out["state"] == "failed"
    assert out["view"] == ["ValueError", message, True], out["view_tb"]
    assert out["panel"] == ["ValueError", message, True]
