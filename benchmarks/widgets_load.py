"""Widget load: kernel CPU and comm traffic with thousands of live future widgets (not a test).

    python benchmarks/widgets_load.py                      # 2,000 futures, 15 s windows
    python benchmarks/widgets_load.py --futures 500 --window 10 --rate 2 --json out.json

A real IPython kernel (jupyter_client) holds N ObjectFutures registered in the registry, and a
driver thread inside it reports progress and one output line for every future ``--rate`` times a
second (2 listener notifications per event; at the defaults 2,000 events/s, far more than the
SDK's tracker produces, which polls a bounded number of futures per session). The benchmark
process reads iopub continuously and samples the kernel process's CPU time (all its threads).

Phases, each measured over ``--window`` seconds once warmed up:

  baseline   futures live and driven, nothing displayed (the driver's own cost)
  widgets    all N futures displayed as widgets (one comm model each) + the status panel
  finished   all futures finished and settled: what completed widgets still cost (should be ~0)

Reported per phase: kernel CPU (% of one core), comm messages/s and KB/s on iopub; plus the cost
of displaying the N widgets. The widgets' overhead is ``widgets - baseline``; the target is < 10 %
of one core. Pump settings can be varied with ``--interval`` and ``--max-rate``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[1]


SETUP = """
import threading, time
from concurrent.futures import Future
from flamepy.core.cache import ObjectRef
from flamepy.runner.runner import ObjectFuture as _FP
from IPython.display import display
from flame_jupyter.future_state import state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.registry import ServiceInfo, registry
from flame_jupyter.widgets.pump import pump

pump().configure(interval={interval}, max_rate={max_rate})
N, RATE = {futures}, {rate}
registry.add_service(ServiceInfo(name="bench", kind="function", app="bench", session_id="bench-ssn"))
inners = [Future() for _ in range(N)]
futures = [ObjectFuture(_FP(i), label=f"task {{k}}", service="bench", app="bench", session_id="bench-ssn") for k, i in enumerate(inners)]
for k, f in enumerate(futures):
    f.task_id = str(k)
    registry.add_future(f)
    state_of(f).running()

stop = threading.Event()
events = [0]

def drive():
    # every future gets RATE events per second: progress + one output line
    slices = 20
    step = 1.0 / (RATE * slices)
    tick = 0
    nxt = time.monotonic()
    while not stop.is_set():
        part = futures[tick % slices :: slices]
        for f in part:
            n = (f.progress[0] if f.progress else 0) + 1
            state_of(f).set_progress(n, 1_000_000, "working")
            state_of(f).add_output("stdout", f"step {{n}}\\n")
        events[0] += len(part)
        tick += 1
        nxt += step
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()

driver = threading.Thread(target=drive, daemon=True, name="bench-driver")
driver.start()
"""

DISPLAY = """
t0 = time.perf_counter()
for f in futures:
    display(f)
from flame_jupyter.status_panel import panel
display(panel())
display_seconds = time.perf_counter() - t0
print("displayed", len(futures), "in", round(display_seconds, 2), "s")
"""

FINISH = """
stop.set(); driver.join(10)
ref = ObjectRef(endpoint="grpc://127.0.0.1:9", key="bench/bench-ssn/x", version=1).encode()
for f, inner in zip(futures, inners):
    state_of(f).set_preview({"text/plain": "42"})
    inner.set_result(ref)
from flame_jupyter.widgets import widget_for
widgets = [widget_for(f) for f in futures]
deadline = time.monotonic() + 120
while time.monotonic() < deadline and any(w.watching for w in widgets):
    time.sleep(0.2)
print("settled", sum(not w.watching for w in widgets), "of", len(widgets), "pending flushes", pump().pending())
"""

STATS = """
print({"events": events[0], "flushes": pump().flushes, "ticks": pump().ticks, "listeners": sum(state_of(f).listeners() for f in futures)})
"""


class Iopub:
    """Drains the kernel's iopub on a thread, counting comm traffic."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.streams: dict[str, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            kind = msg["msg_type"]
            size = len(json.dumps(msg["content"], default=str))
            parent = msg["parent_header"].get("msg_id", "")
            with self.lock:
                if kind == "stream":
                    self.streams[parent] = self.streams.get(parent, "") + msg["content"]["text"]
                self.counts[kind] = self.counts.get(kind, 0) + 1
                self.bytes[kind] = self.bytes.get(kind, 0) + size

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self.lock:
            return dict(self.counts), dict(self.bytes)


def run_cell(kc: Any, iopub: Iopub, code: str, timeout: float = 600) -> str:
    """Execute code; return its stdout (raises on error)."""
    msg_id = kc.execute(code, store_history=False)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    time.sleep(0.5)  # the last stream messages of the cell
    with iopub.lock:
        return iopub.streams.get(msg_id, "")


def measure(name: str, proc: psutil.Process, iopub: Iopub, window: float) -> dict[str, Any]:
    c0, b0 = iopub.snapshot()
    t0 = proc.cpu_times()
    w0 = time.monotonic()
    time.sleep(window)
    t1 = proc.cpu_times()
    w1 = time.monotonic()
    c1, b1 = iopub.snapshot()
    wall = w1 - w0
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    comm_msgs = c1.get("comm_msg", 0) - c0.get("comm_msg", 0)
    comm_bytes = b1.get("comm_msg", 0) - b0.get("comm_msg", 0)
    return {
        "phase": name,
        "seconds": round(wall, 2),
        "kernel_cpu_pct_of_one_core": round(100 * cpu / wall, 2),
        "comm_msgs_per_s": round(comm_msgs / wall, 1),
        "comm_kb_per_s": round(comm_bytes / wall / 1024, 1),
    }


def measure_widgets(opts: argparse.Namespace) -> dict[str, Any]:
    """Run the three phases in a fresh kernel; ``opts`` carries futures, rate, window, warmup,
    interval and max_rate (as the command line). Returns the results (see the module doc)."""
    home = Path(tempfile.mkdtemp(prefix="fj-widgets-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(home))
    kc = km.client()
    kc.start_channels()
    results: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}
    }
    try:
        kc.wait_for_ready(timeout=120)
        proc = psutil.Process(km.provisioner.process.pid)
        iopub = Iopub(kc)
        setup = SETUP.format(
            futures=opts.futures, rate=opts.rate, interval=opts.interval, max_rate=opts.max_rate
        )
        run_cell(kc, iopub, setup)
        time.sleep(opts.warmup)
        phases = [measure("baseline", proc, iopub, opts.window)]

        c0, b0 = iopub.snapshot()
        t0 = proc.cpu_times()
        w0 = time.monotonic()
        out = run_cell(kc, iopub, DISPLAY)
        t1 = proc.cpu_times()
        c1, b1 = iopub.snapshot()
        results["display"] = {
            "widgets": opts.futures + 1,
            "seconds": round(time.monotonic() - w0, 2),
            "kernel_cpu_seconds": round((t1.user - t0.user) + (t1.system - t0.system), 2),
            "kernel_says": out.strip(),
            "comm_opens": c1.get("comm_open", 0) - c0.get("comm_open", 0),
            "comm_open_kb_each": round(
                (b1.get("comm_open", 0) - b0.get("comm_open", 0))
                / max(1, c1.get("comm_open", 0) - c0.get("comm_open", 0))
                / 1024,
                2,
            ),
        }
        time.sleep(opts.warmup)
        phases.append(measure("widgets", proc, iopub, opts.window))
        results["pump"] = run_cell(kc, iopub, STATS).strip()
        results["finish"] = run_cell(kc, iopub, FINISH).strip()
        time.sleep(opts.warmup)
        phases.append(measure("finished", proc, iopub, opts.window))
        results["phases"] = phases
        base, live = phases[0]["kernel_cpu_pct_of_one_core"], phases[1]["kernel_cpu_pct_of_one_core"]
        results["widget_overhead_pct_of_one_core"] = round(live - base, 2)
        results["target_pct"] = 10.0
        results["meets_target"] = live - base < 10.0
        results["machine"] = {"cpus": psutil.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}
    finally:
        reader = locals().get("iopub")
        if reader is not None:
            reader.stop.set()
            reader.thread.join(5)
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        shutil.rmtree(home, ignore_errors=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--futures", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1.0, help="events per future per second")
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured per phase")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=0.25, help="pump tick interval (s)")
    ap.add_argument("--max-rate", type=float, default=150.0, help="pump budget (messages/s)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    results = measure_widgets(args)
    print(
        f"{args.futures} live futures, {args.rate:g} events/future/s, pump interval {args.interval}s, budget {args.max_rate:g} msg/s"
    )
    d = results["display"]
    print(
        f"display: {d['widgets']} widgets in {d['seconds']} s ({d['kernel_cpu_seconds']} s kernel CPU), "
        f"{d['comm_opens']} comm_open, {d['comm_open_kb_each']} KB each"
    )
    print("pump during the widgets phase:", results["pump"])
    print(results["finish"])
    print(f"{'phase':<10} {'kernel CPU %':>13} {'comm msg/s':>11} {'comm KB/s':>10}")
    for p in results["phases"]:
        print(
            f"{p['phase']:<10} {p['kernel_cpu_pct_of_one_core']:>13} {p['comm_msgs_per_s']:>11} {p['comm_kb_per_s']:>10}"
        )
    print(
        f"widget overhead: {results['widget_overhead_pct_of_one_core']} % of one core "
        f"(target < {results['target_pct']} %): {'OK' if results['meets_target'] else 'OVER'}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
