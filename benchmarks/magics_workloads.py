"""The magics in a real IPython kernel (system ``flame-magics``): W1, W2, W6, W7 and W8.

Run by ``run.py`` with the same command line and JSON as ``workloads.py``::

    python benchmarks/magics_workloads.py --system flame-magics --cold --out r.json   # W1, once
    python benchmarks/magics_workloads.py --system flame-magics --workloads W2,W7 --out r.json

A kernel started with jupyter_client (this interpreter) runs ``%load_ext flame_jupyter`` (the
embedded runtime, ``max_instances`` = cores, as ``%load_ext`` starts it); notebook code is defined in cells, as a user would,
and each figure is timed from this process the way a front end sees it: execute_request sent →
execute_reply received. W3, W4 and W5 are one SDK call path behind a cell (the ``flame-sdk``
column); they show as n/a here. W8 is ``widgets_load.py``: 2,000 live future widgets in a kernel.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import tempfile
import time
from typing import Any

T_PROCESS = time.perf_counter()

from workloads import FULL, MB, SMOKE, Deadline, MemorySampler, _latency_stats, _reason, _write  # noqa: E402

NOT_A_CELL = "one SDK call path behind a cell: see the flame-sdk column"

DEFINE = """
from dataclasses import dataclass
OFFSET, FACTOR = 10, 1
def inc(x):
    return x + 1
def add_offset(x):
    return x + OFFSET
@dataclass
class Point:
    x: float
    y: float
def scale(p, k):
    return Point(p.x * k, p.y * k)
def times_factor(x):
    return x * FACTOR
"""


class Kernel:
    """A kernel with this interpreter, a clean HOME (no flame.yaml) and no FLAME_* variables."""

    def __init__(self) -> None:
        from jupyter_client.manager import KernelManager

        self.home = tempfile.mkdtemp(prefix="bench-magics-home-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
        env["HOME"] = self.home
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=self.home)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 600) -> tuple[float, str, str]:
        """Execute ``code``; return (seconds until execute_reply, stdout, text/plain of its value).
        Raises RuntimeError with the kernel's error if the cell failed."""
        t = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=False)
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        took = time.perf_counter() - t
        stdout, value = "", ""
        while time.monotonic() < deadline:  # the cell's iopub, up to its idle status
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                stdout += content["text"]
            elif kind == "execute_result":
                value = content["data"].get("text/plain", "")
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        return took, stdout, value

    def close(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=False)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def _load(k: Kernel) -> float:
    """``%load_ext flame_jupyter``: starts the embedded runtime (max_instances = cores)."""
    took, stdout, _ = k.run("%load_ext flame_jupyter")
    assert "embedded" in stdout, stdout
    return took


def _flame_inc(k: Kernel, i: int) -> float:
    """Time one ``%%flame -o r`` cell computing ``inc(i)``; check ``r`` in the notebook after."""
    took, _, _ = k.run(f"%%flame -o r\nr = inc({i})")
    _, stdout, _ = k.run("print(r)")
    assert stdout.strip() == str(i + 1), stdout
    return took


# -- workloads ----------------------------------------------------------------------------------
def w2(k: Kernel, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """``%%flame -o r`` cells ``r = inc(i)``, one at a time (each result checked in the notebook
    after, untimed); also the kernel's own empty-cell round trip, for scale."""
    for i in range(cfg["warmup"]):
        _flame_inc(k, i)
    lat: list[float] = []
    for i in range(cfg["n"]):
        if dl.expired():
            break
        lat.append(_flame_inc(k, i))
    out = _latency_stats(lat, cfg["n"])
    empty = [k.run("pass")[0] for _ in range(min(cfg["n"], 100))]
    out["empty_cell_p50_ms"] = sorted(empty)[len(empty) // 2] * 1e3
    return out


def w6(k: Kernel, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def check(key: str, cells: list[str], want: str) -> None:
        """Run the cells; the answer is whether the last one printed ``want``."""
        try:
            for code in cells:
                _, stdout, _ = k.run(code)
            out[key] = {"ok": stdout.strip() == want, "detail": stdout.strip()[-300:]}
        except Exception as e:  # noqa: BLE001 - a failure is the answer "no"
            out[key] = {"ok": False, "detail": _reason(e)}

    check("closure", ["%%flame -o r\nr = add_offset(1)", "print(r == 11, r)"], "True 11")
    check(
        "dataclass",
        [
            "%%flame -o p\np = scale(Point(1.0, 2.0), 3.0)",
            "print(type(p) is Point and p == Point(3.0, 6.0), p)",
        ],
        "True Point(x=3.0, y=6.0)",
    )
    check(
        "rebind",
        [
            "FACTOR = 1",
            "%%flame -o r1\nr1 = times_factor(5)",
            "FACTOR = 2",
            "%%flame -o r2\nr2 = times_factor(5)",
            "print((r1, r2) == (5, 10), r1, r2)",
        ],
        "True 5 10",
    )
    k.run("FACTOR = 1")
    return out


def w7(k: Kernel, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """A ``%%flame`` cell reading a large notebook global: first run and the same cell again."""
    n = int(cfg["mb"] * MB / 8)
    k.run(f"import numpy as np\nBIG = np.random.default_rng(1).random({n})\nWANT = float(BIG[7])")
    out: dict[str, Any] = {"mb": n * 8 / MB}
    for key in ("first", "repeat"):
        if dl.expired():
            break
        took, _, _ = k.run("%%flame -o v\nv = float(BIG[7])")
        _, stdout, _ = k.run("print(v == WANT)")
        assert stdout.strip() == "True", stdout
        out[f"{key}_s"] = took
    k.run("del BIG")
    return out


def w8(cfg: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """2,000 live future widgets in their own kernel (``widgets_load.py``)."""
    from widgets_load import measure_widgets

    opts = argparse.Namespace(
        futures=200 if smoke else 2000,
        rate=1.0,
        window=3.0 if smoke else 10.0,
        warmup=1.0 if smoke else 3.0,
        interval=0.25,
        max_rate=150.0,
    )
    res = measure_widgets(opts)
    widgets = next(p for p in res["phases"] if p["phase"] == "widgets")
    return {
        "futures": opts.futures,
        "cpu_pct": res["widget_overhead_pct_of_one_core"],
        "comm_msgs_per_s": widgets["comm_msgs_per_s"],
        "display_s": res["display"]["seconds"],
        "phases": res["phases"],
    }


RUNNERS = {"W2": w2, "W6": w6, "W7": w7}


# -- the two entry points run.py uses ---------------------------------------------------------------
def run_cold(out_path: str) -> None:
    """W1 in this fresh process: kernel start, ``%load_ext`` + first ``%%flame`` result, shutdown."""
    t0 = time.perf_counter()
    k = Kernel()
    t1 = time.perf_counter()
    try:
        start = _load(k)
        k.run(DEFINE)
        first = _flame_inc(k, 1)
    finally:
        t_stop = time.perf_counter()
        k.close()
        t3 = time.perf_counter()
    _write(
        out_path,
        {
            "system": "flame-magics",
            "interpreter_to_main_s": t0 - T_PROCESS,
            "kernel_start_s": t1 - t0,
            "start_s": start,
            "first_result_s": first,
            "stop_s": t3 - t_stop,
            "in_process_s": t3 - T_PROCESS,
        },
    )


def run_warm(wl: list[str], sizes: dict[str, Any], out_path: str, smoke: bool, memory: bool = True) -> int:
    from systems.base import package_versions

    res: dict[str, Any] = {"system": "flame-magics", "status": "ok", "workloads": {}}
    res["versions"] = package_versions(
        "flame-jupyter", "flamepy", "ipykernel", "jupyter-client", "ipywidgets"
    )
    res["notes"] = [
        "a real IPython kernel (jupyter_client), `%load_ext flame_jupyter` with the embedded runtime "
        f"(max_instances = cores = {os.cpu_count()}); figures timed from the front end: execute_request → execute_reply",
        "W2: `%%flame -o r` cells `r = inc(i)`; W6/W7: `%%flame -o name` cells; W8: widgets_load.py",
    ]
    k: Kernel | None = None
    sampler = MemorySampler() if memory else None  # this process, the kernel, its runtime, instances
    if sampler:
        sampler.start()
    try:
        for w in wl:
            if w in ("W3", "W4", "W5"):
                res["workloads"][w] = {"status": "n/a", "reason": NOT_A_CELL}
                continue
            entry: dict[str, Any] = {"status": "ok"}
            if sampler:
                sampler.reset()
            t = time.perf_counter()
            try:
                if w == "W8":
                    entry["metrics"] = w8(sizes[w], smoke)
                elif w in RUNNERS:
                    if k is None:
                        k = Kernel()
                        res["start_s"] = _load(k)
                        k.run(DEFINE)
                    entry["metrics"] = RUNNERS[w](k, sizes[w], Deadline(sizes[w]["cap_s"]))
                else:
                    continue
            except Exception as e:  # noqa: BLE001 - record and go on with the next workload
                import traceback

                traceback.print_exc()
                entry = {"status": "error", "reason": _reason(e)}
            entry["elapsed_s"] = time.perf_counter() - t
            if sampler and w != "W8":  # W8's futures are stand-ins, not Flame calls
                sampler.sample()
                entry["peak_rss_mb"] = sampler.peak / MB
                res["peak_rss_mb"] = max(res.get("peak_rss_mb", 0.0), entry["peak_rss_mb"])
            res["workloads"][w] = entry
            print(
                f"[flame-magics] {w}: {entry['status']} in {entry['elapsed_s']:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            _write(out_path, res)
    finally:
        if sampler:
            sampler.stop()
        if k is not None:
            t = time.perf_counter()
            k.close()
            res["stop_s"] = time.perf_counter() - t
        _write(out_path, res)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", default="flame-magics")
    p.add_argument("--workloads", default="W2,W6,W7,W8")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--cold", action="store_true", help="run W1 (one cold start) and exit")
    p.add_argument("--out", required=True, help="JSON result file")
    p.add_argument("--workers", type=int, default=2, help="accepted for run.py; the kernel uses cores")
    p.add_argument("--no-memory", action="store_true", help="no RSS sampling")
    a = p.parse_args(argv)
    if a.cold:
        run_cold(a.out)
        return 0
    sizes = {k: dict(v) for k, v in (SMOKE if a.smoke else FULL).items()}
    wl = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    return run_warm(wl, sizes, a.out, a.smoke, memory=not a.no_memory)


if __name__ == "__main__":
    sys.exit(main())
