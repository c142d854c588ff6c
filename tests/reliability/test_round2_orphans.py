"""Round 2, fault 9: processes a task starts in a new session (``setsid``, double fork) end with
their instance: at service close, at Runner close and at runtime stop."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.reliability.relkit import RuntimeChild, alive, client_env, report, start_client, wait_for

CLIENT = """
import json, sys
import flame_jupyter as fj

def escape():
    import subprocess
    # setsid: a new session and process group; '&' then exit: a double fork (the sleep is orphaned)
    out = subprocess.run(["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 </dev/null & echo $!"],
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip())

how = HOW
rr = fj.Runner("orphans-" + how)
svc = rr.service(escape)
pid = svc().get(timeout=120)
print("PID " + json.dumps(pid), flush=True)
if how == "service":
    svc.close()
    print("CLOSED", flush=True)
    sys.stdin.readline()
    rr.close()
elif how == "runner":
    rr.close()
    print("CLOSED", flush=True)
    sys.stdin.readline()
else:  # runtime: the test stops the runtime while the service is open
    print("CLOSED", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("how", ["service", "runner", "runtime"])
def test_a_double_forked_setsid_child_ends_with_its_instance(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rt = RuntimeChild({"max_instances": 1, "warm_instances": 0}).start()
    pid = 0
    try:
        proc = start_client(tmp_path, client_env(rt.client_env(), home), CLIENT.replace("HOW", repr(how)))
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("PID "), line + (proc.stderr.read() if proc.stderr else "")
            pid = json.loads(line[4:])
            assert alive(pid)
            assert proc.stdout.readline().strip() == "CLOSED", proc.stderr.read() if proc.stderr else ""
            if how == "runtime":
                rt.stop()
            try:
                gone = wait_for(lambda: not alive(pid), 15, f"process {pid} to end")
            except AssertionError:
                gone = False
        finally:
            proc.communicate("go\n", timeout=60)
    finally:
        rt.stop()
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert gone, f"the setsid'd grandchild {pid} outlived the {how} close"
    report("setsid-grandchild-ended", at=how, left=0)
