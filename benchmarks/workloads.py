"""The workloads, run as ``__main__`` by ``run.py`` (one process per system), as a notebook would.

Everything a task runs (functions, the ``Counter`` class, the ``Point`` dataclass, the globals)
is defined at the top of this file, so in the workload process it lives in ``__main__``.

Usage (``run.py`` does this for you)::

    python benchmarks/workloads.py --system flame --workloads W2,W3 --out r.json [--smoke]
    python benchmarks/workloads.py --system flame --cold --out r.json      # W1, one cold start
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()  # W1: before any import beyond time

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Notebook-style definitions: these live in __main__ in the workload process.
# (numpy is imported inside task bodies: ipyparallel resolves globals in the engine namespace.)
# ---------------------------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def array_sum(a: Any) -> float:
    return float(a.sum())


def make_array(n: int) -> Any:
    import numpy as np

    return np.full(n, 1.0)


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, x: int) -> int:
        self.value += x
        return self.value


OFFSET = 10


def add_offset(x: int) -> int:
    return x + OFFSET


@dataclass
class Point:
    x: float
    y: float


def scale(p: Point, k: float) -> Point:
    return Point(p.x * k, p.y * k)


FACTOR = 1


def times_factor(x: int) -> int:
    return x * FACTOR


BIG: Any = None  # W7 sets a large array here


def big_at(i: int) -> float:
    return float(BIG[i])


# ---------------------------------------------------------------------------------------------
# Sizes and caps
# ---------------------------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "W1": {"repeats": 3, "cap_s": 180},
    "W2": {"n": 500, "warmup": 10, "cap_s": 120},
    "W3": {"n": 2000, "warmup": 20, "cap_s": 180},
    "W4": {"mb": 100, "repeats": 5, "cap_s": 300},
    "W5": {"n": 500, "warmup": 10, "cap_s": 120},
    "W6": {"cap_s": 120},
    "W7": {"mb": 200, "cap_s": 300},
    "W8": {"cap_s": 0},
}
SMOKE: dict[str, Any] = {
    "W1": {"repeats": 1, "cap_s": 120},
    "W2": {"n": 20, "warmup": 3, "cap_s": 60},
    "W3": {"n": 100, "warmup": 4, "cap_s": 60},
    "W4": {"mb": 1, "repeats": 2, "cap_s": 60},
    "W5": {"n": 20, "warmup": 3, "cap_s": 60},
    "W6": {"cap_s": 60},
    "W7": {"mb": 2, "cap_s": 60},
    "W8": {"cap_s": 0},
}
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]
MB = 1_000_000  # figures use decimal megabytes


class NotApplicable(Exception):
    """The workload cannot run on this system; the message says why."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() > self.end


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _latency_stats(lat_s: list[float], wanted: int) -> dict[str, Any]:
    ms = [v * 1e3 for v in lat_s]
    return {
        "n": len(ms),
        "n_wanted": wanted,
        "p50_ms": _pct(ms, 50),
        "p99_ms": _pct(ms, 99),
        "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


# ---------------------------------------------------------------------------------------------
# Memory: RSS of this process and all its descendants, sampled in a thread
# ---------------------------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """Max over time of the summed RSS of this process tree (shared pages count once per process)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="bench-memory")
        import psutil

        self._psutil = psutil
        self._root = psutil.Process()
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.peak = 0
        self.peak_procs = 0
        self.overall = 0

    def sample(self) -> int:
        ps = self._psutil
        total, count = 0, 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except ps.Error:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
                count += 1
            except ps.Error:
                pass
        with self._lock:
            self.peak = max(self.peak, total)
            self.overall = max(self.overall, total)
            self.peak_procs = max(self.peak_procs, count)
        return total

    def reset(self) -> None:
        with self._lock:
            self.peak = 0
            self.peak_procs = 0
        self.sample()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------------
# Workloads (W1 is the cold start, run by main() in a fresh process)
# ---------------------------------------------------------------------------------------------


def w2_round_trip(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """``inc(x)`` submitted and awaited, one at a time."""
    for i in range(cfg["warmup"]):
        assert sys_.call(inc, i) == i + 1
    lat: list[float] = []
    for i in range(cfg["n"]):
        if dl.expired():
            break
        t = time.perf_counter()
        r = sys_.call(inc, i)
        lat.append(time.perf_counter() - t)
        assert r == i + 1, r
    return _latency_stats(lat, cfg["n"])


def w3_throughput(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """``n`` trivial tasks submitted at once, then all gathered."""
    n = cfg["n"]
    sys_.gather([sys_.submit(inc, i) for i in range(cfg["warmup"])])
    t0 = time.perf_counter()
    handles = [sys_.submit(inc, i) for i in range(n)]
    t1 = time.perf_counter()
    results = sys_.gather(handles)
    t2 = time.perf_counter()
    assert results == [i + 1 for i in range(n)]
    return {
        "n": n,
        "tasks_per_s": n / (t2 - t0),
        "total_s": t2 - t0,
        "submit_s": t1 - t0,
        "gather_s": t2 - t1,
    }


def _timed(fn: Callable[[], Any], repeats: int, dl: Deadline) -> tuple[list[float], Any]:
    times: list[float] = []
    out = None
    for _ in range(repeats):
        if times and dl.expired():
            break
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def _throughput(times: list[float], nbytes: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "mb_per_s": nbytes / MB / med, "repeats": len(times)}


def w4_large_data(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """A large float64 array as argument (plain, and through the system's put), and as result."""
    import numpy as np

    n = int(cfg["mb"] * MB / 8)
    nbytes = n * 8
    arr = np.random.default_rng(0).random(n)
    expected = float(arr.sum())
    reps = cfg["repeats"]
    out: dict[str, Any] = {"mb": nbytes / MB}
    arr.copy()  # the first large allocation of a process is much slower than the next ones
    times, _ = _timed(arr.copy, reps, dl)
    out["copy"] = _throughput(times, nbytes)
    assert sys_.call(array_sum, arr[:1000]) == float(arr[:1000].sum())  # warm both functions
    assert sys_.call(make_array, 10).shape == (10,)

    def arg() -> None:
        r = sys_.call(array_sum, arr)
        assert abs(r - expected) <= 1e-6 * abs(expected), r

    def put_arg() -> None:
        r = sys_.call(array_sum, sys_.put(arr))
        assert abs(r - expected) <= 1e-6 * abs(expected), r

    def ret() -> None:
        r = sys_.call(make_array, n)
        assert r.shape == (n,) and r[0] == 1.0 and r[-1] == 1.0

    for key, fn in (("arg", arg), ("put_arg", put_arg), ("ret", ret)):
        try:
            times, _ = _timed(fn, reps, dl)
            out[key] = _throughput(times, nbytes)
        except Exception as e:  # noqa: BLE001 - one failing direction must not hide the others
            out[key] = {"status": _status_of(e), "reason": _reason(e)}
        gc.collect()
    return out


def w5_actor(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """A ``__main__`` class instance as a remote actor; sequential ``add`` calls."""
    actor = sys_.actor(Counter(0))
    total = 0
    for _ in range(cfg["warmup"]):
        total += 1
        assert sys_.gather([actor.submit("add", 1)])[0] == total
    lat: list[float] = []
    for _ in range(cfg["n"]):
        if dl.expired():
            break
        t = time.perf_counter()
        r = sys_.gather([actor.submit("add", 1)])[0]
        lat.append(time.perf_counter() - t)
        total += 1
        assert r == total, (r, total)  # state kept between calls
    return _latency_stats(lat, cfg["n"])


def w6_correctness(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """Closure over a global, a dataclass in and out, a global rebound between calls."""
    global FACTOR
    out: dict[str, Any] = {}

    def check(key: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a failure is the answer "no"
            ok, detail = False, _reason(e)
        out[key] = {"ok": ok, "detail": detail}

    def closure() -> tuple[bool, str]:
        r = sys_.call(add_offset, 1)
        return r == 1 + OFFSET, f"add_offset(1) -> {r!r}"

    def dataclass_() -> tuple[bool, str]:
        r = sys_.call(scale, Point(1.0, 2.0), 3.0)
        same_class = type(r) is Point
        ok = same_class and (r.x, r.y) == (3.0, 6.0)
        return ok, f"scale(Point(1, 2), 3) -> {r!r}; result class is __main__.Point: {same_class}"

    def rebind() -> tuple[bool, str]:
        global FACTOR
        FACTOR = 1
        r1 = sys_.call(times_factor, 5)
        FACTOR = 2
        r2 = sys_.call(times_factor, 5)
        return (r1, r2) == (5, 10), f"FACTOR=1: {r1!r}; after FACTOR=2: {r2!r} (want 5, 10)"

    try:
        check("closure", closure)
        check("dataclass", dataclass_)
        check("rebind", rebind)
    finally:
        FACTOR = 1
    return out


def w7_capture(sys_: Any, cfg: dict[str, Any], dl: Deadline) -> dict[str, Any]:
    """A call reading a large ``__main__`` global: first and repeat call."""
    global BIG
    import numpy as np

    BIG = np.random.default_rng(1).random(int(cfg["mb"] * MB / 8))
    want = float(BIG[7])
    out: dict[str, Any] = {"mb": BIG.nbytes / MB}
    try:
        for key in ("first", "repeat"):
            if dl.expired():
                break
            t = time.perf_counter()
            r = sys_.capture_call(big_at, 7)
            out[f"{key}_s"] = time.perf_counter() - t
            assert r == want, r
    finally:
        BIG = None
        gc.collect()
    return out


RUNNERS: dict[str, Callable[[Any, dict[str, Any], Deadline], dict[str, Any]]] = {
    "W2": w2_round_trip,
    "W3": w3_throughput,
    "W4": w4_large_data,
    "W5": w5_actor,
    "W6": w6_correctness,
    "W7": w7_capture,
}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _reason(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_of(e: BaseException) -> str:
    from systems.base import NotSupported

    return "n/a" if isinstance(e, (NotSupported, NotApplicable)) else "error"


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def run_cold(name: str, out_path: str, workers: int) -> None:
    """W1 in this fresh process: import, start, first trivial result, shutdown."""
    t_import = time.perf_counter()
    from systems import REGISTRY

    sys_ = REGISTRY[name].load(workers)
    res: dict[str, Any] = {"system": name}
    t0 = time.perf_counter()
    try:
        sys_.start()
        t1 = time.perf_counter()
        r = sys_.call(inc, 1)
        t2 = time.perf_counter()
        assert r == 2, r
    finally:
        t_stop = time.perf_counter()
        sys_.stop()
        t3 = time.perf_counter()
    res.update(
        interpreter_to_main_s=t_import - T_PROCESS,
        start_s=t1 - t0,
        first_result_s=t2 - t1,
        stop_s=t3 - t_stop,
        in_process_s=t3 - T_PROCESS,
    )
    _write(out_path, res)


def run_warm(
    name: str, workloads: list[str], sizes: dict[str, Any], out_path: str, workers: int, memory: bool
) -> int:
    """W2..W8 in this process against one started system; results rewritten after each workload."""
    from systems import REGISTRY

    for obj in (inc, Counter, Point, add_offset):
        assert obj.__module__ == "__main__", "workloads.py must run as a script"
    sampler = None
    if memory:
        try:
            sampler = MemorySampler()
        except ImportError:  # no psutil in this interpreter: no memory figures
            sampler = None
    if sampler:
        sampler.start()
    res: dict[str, Any] = {"system": name, "status": "ok", "workloads": {}}
    sys_ = REGISTRY[name].load(workers)
    res["versions"] = sys_.versions()
    res["notes"] = sys_.notes()
    started = False
    try:
        t = time.perf_counter()
        sys_.start()
        started = True
        res["start_s"] = time.perf_counter() - t
        _write(out_path, res)
        for w in workloads:
            if w == "W8":
                res["workloads"][w] = {
                    "status": "skipped",
                    "reason": "live future widgets are measured in a kernel: see flame-magics",
                }
                continue
            if w not in RUNNERS:
                continue
            cfg = sizes[w]
            entry: dict[str, Any] = {"status": "ok"}
            gc.collect()
            if sampler:
                sampler.reset()
            t = time.perf_counter()
            try:
                sys_.begin(w)
                if os.environ.get("BENCH_STARTED_FILE"):  # profile_flame.py attaches a profiler now
                    with open(os.environ["BENCH_STARTED_FILE"], "a") as f:
                        f.write(f"{w}\n")
                try:
                    entry["metrics"] = RUNNERS[w](sys_, cfg, Deadline(cfg["cap_s"]))
                finally:
                    sys_.end(w)
            except Exception as e:  # noqa: BLE001 - record and go on with the next workload
                traceback.print_exc()
                entry = {"status": _status_of(e), "reason": _reason(e)}
            entry["elapsed_s"] = time.perf_counter() - t
            if sampler:
                sampler.sample()
                entry["peak_rss_mb"] = sampler.peak / MB
                entry["peak_procs"] = sampler.peak_procs
            res["workloads"][w] = entry
            print(
                f"[{name}] {w}: {entry['status']} in {entry['elapsed_s']:.1f}s", file=sys.stderr, flush=True
            )
            _write(out_path, res)
    except Exception as e:  # noqa: BLE001 - start failed
        traceback.print_exc()
        res["status"] = "error"
        res["reason"] = _reason(e)
    finally:
        t = time.perf_counter()
        try:
            sys_.stop()
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            res["stop_error"] = _reason(e)
        res["stop_s"] = time.perf_counter() - t
        if not started:
            res.setdefault("reason", "start failed")
        if sampler:
            sampler.stop()
            res["peak_rss_mb"] = sampler.overall / MB
        _write(out_path, res)
    return 0 if res["status"] == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", required=True)
    p.add_argument("--workloads", default="W2,W3,W4,W5,W6,W7,W8")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--cold", action="store_true", help="run W1 (one cold start) and exit")
    p.add_argument("--out", required=True, help="JSON result file")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="W2.n=3000", help="override a size")
    a = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if a.cold:
        run_cold(a.system, a.out, a.workers)
        return 0
    sizes = {k: dict(v) for k, v in (SMOKE if a.smoke else FULL).items()}
    for item in a.set:
        key, _, value = item.partition("=")
        w, _, field = key.partition(".")
        sizes[w.upper()][field] = type(sizes[w.upper()][field])(value)
    wl = [w.strip().upper() for w in a.workloads.split(",") if w.strip()]
    return run_warm(a.system, wl, sizes, a.out, a.workers, memory=not a.no_memory)


if __name__ == "__main__":
    sys.exit(main())
