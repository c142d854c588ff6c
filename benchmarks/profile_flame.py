"""Profile flame's side of a workload (W2, W3 or W4) and print where the time goes.

    python benchmarks/profile_flame.py --tool pyinstrument --workload W2   # client (main thread)
    python benchmarks/profile_flame.py --tool py-spy --workload W2         # every thread and process

It runs ``workloads.py`` (so task functions live in ``__main__``, full sizes) under the profiler.
``--system flame-inproc`` (default) runs the runtime inside the benchmark process, so py-spy sees
the client, the runtime's gRPC/Flight/manager threads and (``--subprocesses``) the instance
processes in one recording.  Output goes to ``benchmarks/results/profiles/``.  The py-spy summary groups samples by process role and thread and
lists the top functions by self and by inclusive samples.  Not a test; prints figures only.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "profiles"


def phases(system: str, n: int, large_mb: float) -> str:
    """Per-call phases of W2 (function), W5 (actor) and W4 (large put/get), timed from the client.

    submit = ``svc(x)`` (cloudpickle + CreateTask RPC); wait = until the WatchTask stream reports
    completion; fetch = ``get_object`` of the result over Flight.  Floors: a unary Frontend RPC
    (``get_application``) and a Flight get of an already-stored small object.  The runtime's own
    view (task creation → completion, ms resolution) comes from ``Session.get_task``.
    """
    import statistics

    sys.path.insert(0, str(ROOT))
    from systems import REGISTRY

    def inc(x: int) -> int:
        return x + 1

    class Counter:
        def __init__(self) -> None:
            self.v = 0

        def add(self, x: int) -> int:
            self.v += x
            return self.v

    sys_ = REGISTRY[system].load(2)
    sys_.start()
    out: list[str] = []
    try:
        from flamepy.core import get_object
        from flamepy.core.client import get_application

        sys_.begin("phases")
        svc = sys_._service(inc)
        actor = sys_._runner.service(Counter())

        def measure(label: str, call: Any) -> None:
            for i in range(10):
                call(i).get()
            rows: dict[str, list[float]] = {"submit": [], "wait": [], "fetch": [], "total": [], "server": []}
            for i in range(n):
                t0 = time.perf_counter()
                fut = call(i)
                t1 = time.perf_counter()
                fut._future.result()
                t2 = time.perf_counter()
                get_object(fut.ref())
                t3 = time.perf_counter()
                rows["submit"].append(t1 - t0)
                rows["wait"].append(t2 - t1)
                rows["fetch"].append(t3 - t2)
                rows["total"].append(t3 - t0)
            out.append(f"{label}: {n} calls, per-call p50 / mean (ms)")
            for k, v in rows.items():
                if v:
                    ms = [x * 1e3 for x in v]
                    out.append(f"  {k:7s} {statistics.median(ms):7.2f} / {statistics.fmean(ms):7.2f}")

        measure("W2 function inc(x)", svc)
        measure("W5 actor add(x)", actor.add)
        rpc = []
        for _ in range(200):
            t = time.perf_counter()
            get_application("flmrun")
            rpc.append(time.perf_counter() - t)
        ref = sys_._runner.put_object(1)
        fl = []
        for _ in range(200):
            ref.version = 0  # force a real fetch
            t = time.perf_counter()
            get_object(ref)
            fl.append(time.perf_counter() - t)
        out.append(f"floor: unary Frontend RPC (get_application) p50 {statistics.median(rpc) * 1e3:.2f} ms")
        out.append(f"floor: Flight get of a stored small object p50 {statistics.median(fl) * 1e3:.2f} ms")
        if large_mb:
            import numpy as np

            arr = np.random.default_rng(0).random(int(large_mb * 1e6 / 8))
            for _ in range(3):
                t = time.perf_counter()
                big = sys_._runner.put_object(arr)
                t1 = time.perf_counter()
                big.version = 0
                got = get_object(big)
                t2 = time.perf_counter()
                assert got.shape == arr.shape
                t3 = time.perf_counter()
                arr.copy()
                t4 = time.perf_counter()
                out.append(
                    f"{large_mb:.0f} MB array: put_object {t1 - t:.3f} s, get_object {t2 - t1:.3f} s, "
                    f"arr.copy() {t4 - t3:.3f} s"
                )
        sys_.end("phases")
    finally:
        sys_.stop()
    return "\n".join(out)


def summarize_pyspy(raw: Path, top: int = 25) -> str:
    """Collapsed py-spy stacks → samples per process/thread, top self and inclusive functions."""
    per_thread: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[tuple[str, str]] = collections.Counter()
    incl_fn: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    root_pid = ""
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        root_pid = root_pid or (procs[0].split(":")[0] if procs else "")
        role = "driver+runtime" if not procs or procs[-1].split(":")[0] == root_pid else "instance"
        thread = next((f for f in frames if f.startswith("thread (")), "thread ?")
        tname = re.sub(r"\d+", "N", thread.split(": ", 1)[1]) if ": " in thread else "unnamed"
        code = [_short(f) for f in frames if not f.startswith(("process ", "thread ("))]
        per_thread[f"{role:15} {tname}"] += n
        total += n
        if code:
            self_fn[(role, code[-1])] += n
            for f in dict.fromkeys(code):
                incl_fn[(role, f)] += n
    if not total:
        return "no samples"
    pct = lambda v: f"{v:7d}  {100 * v / total:5.1f}%"  # noqa: E731
    lines = [f"total samples (non-idle threads): {total}", "", "by process / thread:"]
    lines += [f"  {pct(v)}  {k}" for k, v in per_thread.most_common(20)]
    lines += ["", f"top {top} functions by self samples:"]
    lines += [f"  {pct(v)}  [{r}] {f}" for (r, f), v in self_fn.most_common(top)]
    boring = re.compile(
        r"^(_bootstrap|_bootstrap_inner|Thread\.run|Thread\._bootstrap\w*|_worker|<module>|main|run_warm)\b"
    )
    lines += ["", f"top {top} functions by inclusive samples (thread/bootstrap frames left out):"]
    lines += [
        f"  {pct(v)}  [{r}] {f}"
        for (r, f), v in [x for x in incl_fn.most_common() if not boring.match(x[0][1])][:top]
    ]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (…/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py)``."""
    m = re.match(r"(.*) \((.*):\d+\)$", frame)
    if not m:
        return frame
    fn, path = m.groups()
    path = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", path)
    path = re.sub(r".*/work/main/", "", path)
    return f"{fn} ({path})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tool", choices=["pyinstrument", "py-spy", "phases"], default="pyinstrument")
    p.add_argument("--workload", choices=["W2", "W3", "W4", "W5", "W7"], default="W2")
    p.add_argument("--system", default="flame-inproc", choices=["flame", "flame-inproc"])
    p.add_argument("--rate", type=int, default=200, help="py-spy samples/s")
    p.add_argument(
        "--delay", type=float, default=3.0, help="seconds after the workload's start before sampling"
    )
    p.add_argument("--duration", type=int, default=8, help="py-spy seconds (from the workload's start)")
    p.add_argument("--set", action="append", default=[], help="size override passed to workloads.py")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"{a.system}-{a.workload}-{a.tool}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    bench = [str(ROOT / "workloads.py"), "--system", a.system, "--workloads", a.workload]
    bench += ["--out", str(stem.with_suffix(".json")), "--no-memory"]
    bench += [f"--set={x}" for x in a.set] or {"W2": ["--set=W2.n=3000"], "W5": ["--set=W5.n=3000"]}.get(
        a.workload, []
    )
    if a.tool == "phases":
        text = phases(a.system, n=500, large_mb=100)
        stem.with_suffix(".txt").write_text(text)
        print(text)
        return 0
    if a.tool == "pyinstrument":
        text = stem.with_suffix(".txt")
        cmd = [
            sys.executable,
            "-m",
            "pyinstrument",
            "--interval",
            "0.0005",
            "-r",
            "text",
            "-o",
            str(text),
            *bench,
        ]
        subprocess.run(cmd, env=env, check=True, timeout=900)
        print(text.read_text())
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = stem.with_suffix(".raw")
    started = stem.with_suffix(".started")
    started.unlink(missing_ok=True)
    env["BENCH_STARTED_FILE"] = str(started)
    proc = subprocess.Popen([sys.executable, *bench], env=env)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not started.exists():
            raise SystemExit("the workload did not start")
        time.sleep(a.delay)
        # Attach once the system is up: imports and runtime start stay out of the profile.
        cmd = [spy, "record", "--pid", str(proc.pid), "--subprocesses", "--threads", "--nonblocking"]
        cmd += ["--rate", str(a.rate), "--duration", str(a.duration), "--format", "raw", "-o", str(raw)]
        subprocess.run(cmd, check=True, timeout=a.duration + 120)
        proc.wait(900)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    summary = summarize_pyspy(raw)
    stem.with_suffix(".txt").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
