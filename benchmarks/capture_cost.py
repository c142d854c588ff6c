"""What capture costs (issue 3): a small function; a cell over a 200 MB global, first and repeat.

    python benchmarks/capture_cost.py [--mb 200] [--repeat 5]

Runs against a private embedded runtime with the real object cache, in this process (the
functions live in ``__main__`` as in a notebook). Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

BIG = None
SCALE = 3


def small(x):
    return x * SCALE


def main() -> None:
    global BIG
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    os.environ["HOME"] = tempfile.mkdtemp(prefix="capture-cost-")
    for k in [k for k in os.environ if k.startswith("FLAME_")]:
        del os.environ[k]
    import flame_jupyter as fj
    from flame_jupyter.capture import Capturer, FlameObjectStore

    fj.connect(embedded=True, max_instances=2)
    rows = []
    try:
        with fj.Runner("capture-cost") as rr:
            cap = Capturer(store=FlameObjectStore("capture-cost/shared"))
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                cap.capture(small)
                times.append(time.perf_counter() - t)
            rows.append(("capture a small function", statistics.median(times) * 1e3, "ms"))
            svc = rr.service(small)
            svc(1).get()
            times = []
            for i in range(args.repeat * 20):
                t = time.perf_counter()
                svc._captured.prepare_call((i,), {})
                times.append(time.perf_counter() - t)
            rows.append(
                ("per-call capture of its globals (prepare_call)", statistics.median(times) * 1e3, "ms")
            )
            BIG = np.random.default_rng(0).random(args.mb * 2**20 // 8)
            ns = globals()
            cell = "float(BIG[3]) * SCALE"
            cells = fj.sdk.CellService(rr, "cells")
            for label in ("first", "repeat"):
                t = time.perf_counter()
                captured = cap.capture_cell(cell, ns)
                t_cap = time.perf_counter() - t
                value = cells.run(captured).get()
                total = time.perf_counter() - t
                assert value == float(BIG[3]) * SCALE
                rows.append((f"a cell over a {args.mb} MB global, {label} run: capture", t_cap, "s"))
                rows.append((f"a cell over a {args.mb} MB global, {label} run: end to end", total, "s"))
    finally:
        fj.disconnect()
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:8.3f} {unit}")
    first = next(v for n, v, _ in rows if "first run: end to end" in n)
    repeat = next(v for n, v, _ in rows if "repeat run: end to end" in n)
    print(f"{'repeat / first (target: repeat at least 10x faster)':<{width}}  {first / repeat:8.1f} x")


if __name__ == "__main__":
    main()
