"""Round 2, client faults: a cancelled queued call never runs (5), every printed byte is there
right after ``get()`` (7), an unresponsive Flame is a clear error within a bound (11), a
million printed lines cost about what one write does and the kernel keeps a bounded copy (13),
and a queued call whose executor cannot be bound fails with the bind error (no wait forever).

Each case runs as a real client script against a real runtime; every wait is bounded.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.reliability.relkit import RuntimeChild, client_env, report, run_client

CANCEL_QUEUED = """
import json, os, time
import flame_jupyter as fj
from flame_jupyter.errors import CancelledError

MARKS = os.environ["MARKS"]

def work(i, marks):
    import os, time
    if i < 0:
        time.sleep(2.0)
        return i
    open(os.path.join(marks, f"ran-{i}"), "w").close()
    time.sleep(0.01)
    return i

rr = fj.Runner("cancel-queued")
svc = rr.service(work, autoscale=False)  # one instance: the 50 calls wait behind the blocker
blocker = svc(-1, MARKS)
futures = [svc(i, MARKS) for i in range(50)]
cancels = [f.cancel() for f in futures]
t = time.monotonic()
blocker.get(timeout=60)
fj.wait(futures, timeout=60)
wait_s = time.monotonic() - t
raised = 0
for f in futures:
    try:
        f.get(timeout=10)
    except CancelledError:
        raised += 1
states = [f.state for f in futures]
rr.close()
print("RESULT " + json.dumps({"cancels": sum(cancels), "ran": len(os.listdir(MARKS)),
      "states": sorted(set(states)), "cancelled": states.count("cancelled"), "raised": raised,
      "wait_s": round(wait_s, 2)}), flush=True)
"""


def test_cancelled_queued_calls_never_run(tmp_path: Path, script_env: dict[str, str]) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    out = run_client(tmp_path, dict(script_env, MARKS=str(marks)), CANCEL_QUEUED, timeout=150)
    report("cancel 50 queued 10 ms calls", **out)
    assert out["cancels"] == 50
    assert out["ran"] == 0, out
    assert out["states"] == ["cancelled"] and out["raised"] == 50, out


OUTPUT_COMPLETE = """
import json, time
import flame_jupyter as fj

def one_write(n):
    import sys
    sys.stdout.write("x" * n)
    return n

def continuous(n):
    import sys
    line = "y" * 1023 + "\\n"
    for _ in range(n // 1024):
        sys.stdout.write(line)
    return n

rr = fj.Runner("output-complete")
big = rr.service(one_write)
f = big(32 << 20)
f.get(timeout=120)
one = sum(len(t) for _, t in f.output)
cont = rr.service(continuous)
got = []
for _ in range(12):
    g = cont(5 << 20)
    g.get(timeout=120)
    got.append(sum(len(t) for _, t in g.output))
rr.close()
print("RESULT " + json.dumps({"one_write": one, "continuous": got}), flush=True)
"""


def test_all_printed_output_is_there_right_after_get(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_client(tmp_path, script_env, OUTPUT_COMPLETE, timeout=300)
    short = [n for n in out["continuous"] if n != 5 << 20]
    report(
        "output complete after get",
        one_write_32mb=out["one_write"],
        continuous_5mb_calls=len(out["continuous"]),
        short_calls=len(short),
    )
    assert out["one_write"] == 32 << 20
    assert not short, out["continuous"]


MANY_LINES = """
import json, os, time
import flame_jupyter as fj
from flame_jupyter.future_state import state_of

TOTAL = int(os.environ["TOTAL_MB"]) << 20

def lines(total):
    import sys
    line = "z" * 99 + "\\n"
    for _ in range(total // 100):
        sys.stdout.write(line)
    return total

def one(total):
    import sys
    sys.stdout.write("z" * total)
    return total

rr = fj.Runner("many-lines")
a, b = rr.service(lines), rr.service(one)
a(1).get(timeout=60), b(1).get(timeout=60)  # instances up

def timed(svc):  # the best of two: one slow moment of a shared machine is not the code's cost
    best = None
    for _ in range(2):
        t = time.monotonic()
        fut = svc(TOTAL)
        fut.get(timeout=300)
        kept = sum(len(x) for _, x in fut.output)
        took = time.monotonic() - t
        best = took if best is None else min(best, took)
    return best, kept, fut

one_s, one_kept, f = timed(b)
lines_s, kept, g = timed(a)
rr.close()
print("RESULT " + json.dumps({"one_s": round(one_s, 2), "lines_s": round(lines_s, 2), "kept": kept,
      "dropped": g.output_dropped, "one_kept": one_kept, "one_dropped": f.output_dropped}), flush=True)
"""


def test_a_million_lines_cost_about_one_write_and_the_kernel_keeps_a_bounded_tail(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    from tests.reliability.relkit import SLOW

    total_mb = 100 if SLOW else 30
    env = dict(script_env, TOTAL_MB=str(total_mb), FLAME_JUPYTER_OUTPUT_LIMIT=str(8 << 20))
    out = run_client(tmp_path, env, MANY_LINES, timeout=400)
    report(f"{total_mb} MB printed as {total_mb * 10_000} lines vs one write", **out)
    total = total_mb << 20
    for kept, dropped in ((out["kept"], out["dropped"]), (out["one_kept"], out["one_dropped"])):
        assert kept + dropped == total // 100 * 100 or kept + dropped == total, out
        assert kept <= 8 << 20 and kept >= 7 << 20, out  # the last 8 MB, whole records
    assert out["lines_s"] <= 3 * max(out["one_s"], 1.0), out


STOPPED = """
import json, os, signal, time
import flame_jupyter as fj

RT = int(os.environ["RT_PID"])

def slow(s):
    import time
    time.sleep(s)
    return s

rr = fj.Runner("deadline")
svc = rr.service(slow)
long = svc(8.0)  # runs longer than the deadline: waiting for it is fine
assert long.get(timeout=60) == 8.0
running = svc(1.5)
time.sleep(0.3)
os.kill(RT, signal.SIGSTOP)
out = {}
try:
    t = time.monotonic()
    try:
        svc(1)
        out["submit"] = "no error"
    except Exception as e:
        out["submit"] = f"{type(e).__name__}: {e}"
    out["submit_s"] = round(time.monotonic() - t, 2)
    t = time.monotonic()
    try:
        running.get(timeout=60)
        out["get"] = "no error"
    except Exception as e:
        out["get"] = f"{type(e).__name__}: {e}"
    out["get_s"] = round(time.monotonic() - t, 2)
finally:
    os.kill(RT, signal.SIGCONT)
out["after"] = running.get(timeout=60)
rr.close()
print("RESULT " + json.dumps(out), flush=True)
"""


def test_an_unresponsive_flame_is_a_clear_error_within_the_deadline(tmp_path: Path, flame_home: Path) -> None:
    with RuntimeChild({"max_instances": 2, "warm_instances": 0}) as rt:
        env = client_env(rt.client_env(), flame_home, RT_PID=str(rt.pid), FLAME_JUPYTER_DEADLINE="4")
        try:
            out = run_client(tmp_path, env, STOPPED, timeout=150)
        finally:
            rt.signal(signal.SIGCONT)
    report("runtime SIGSTOPped, deadline 4 s", **out)
    assert out["submit"].startswith("FlameJupyterError") and "Flame is not answering" in out["submit"], out
    assert rt.endpoint.split("//")[-1] in out["submit"], out
    assert out["submit_s"] <= 10, out
    assert "Flame is not answering" in out["get"] and out["get_s"] <= 12, out
    assert out["after"] == 1.5


UNBINDABLE = """
import json, time
import flame_jupyter as fj

def f(x):
    return x

rr = fj.Runner("unbindable-deps", dependencies=["definitely-not-a-real-pkg-xyz==1.0"])
svc = rr.service(f)
fut = svc(1)
t = time.monotonic()
try:
    fut.get(timeout=120)
    err = "no error"
except Exception as e:
    err = f"{type(e).__name__}: {e}"
out = {"error": err, "state": fut.state, "seconds": round(time.monotonic() - t, 1)}
shown = svc(2)
t = time.monotonic()
while shown.state == "queued" and time.monotonic() - t < 120:
    time.sleep(0.5)
out["shown_state"] = shown.state
try:
    rr.close(timeout=10)
except Exception as e:
    out["close"] = str(e)
print("RESULT " + json.dumps(out), flush=True)
"""


def test_a_call_whose_executor_cannot_be_bound_fails_with_the_bind_error(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    out = run_client(tmp_path, dict(script_env, PIP_NO_INDEX="1"), UNBINDABLE, timeout=300)
    report("unbindable executor (failed install)", seconds=out["seconds"], state=out["state"])
    assert out["state"] == "failed" and out["shown_state"] == "failed", out
    assert "definitely-not-a-real-pkg-xyz" in out["error"], out
    assert "could not start an executor" in out["error"], out
