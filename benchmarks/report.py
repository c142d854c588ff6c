"""Tables from a results JSON: each figure with its ratio to the best system in the same run.

``python benchmarks/report.py results.json [--md docs/benchmarks.md]`` re-renders a saved run.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Cell = tuple[float | None, str]  # (number used for ratios, text); number None = no ratio


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str  # "lower", "higher" or "" (no ratio)
    get: Callable[[dict[str, Any]], Cell]


def _wl(sysres: dict[str, Any], w: str) -> dict[str, Any] | None:
    return (sysres.get("workloads") or {}).get(w)


def _na(entry: dict[str, Any] | None, sysres: dict[str, Any]) -> str:
    if sysres.get("status") == "n/a":
        return "n/a"
    if entry is None:
        return "not run" if sysres.get("status") == "ok" else "—"
    status = entry.get("status", "?")
    return status if status != "ok" else "?"


def _metric(w: str, path: list[str], fmt: str, unit: str = "") -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        entry = _wl(sysres, w)
        if entry is None or entry.get("status") != "ok":
            return None, _na(entry, sysres)
        v: Any = entry.get("metrics", {})
        for k in path:
            if not isinstance(v, dict) or k not in v:
                return None, "—"
            v = v[k]
        if isinstance(v, dict):  # a sub-measurement that failed
            return None, str(v.get("status", "—"))
        return float(v), format(v, fmt) + unit

    return get


def _transfer(w: str, key: str) -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        entry = _wl(sysres, w)
        if entry is None or entry.get("status") != "ok":
            return None, _na(entry, sysres)
        m = entry["metrics"].get(key)
        if not m or "median_s" not in m:
            return None, (m or {}).get("status", "—")
        return m["median_s"], f"{m['median_s']:.3f} s · {m['mb_per_s']:.0f} MB/s"

    return get


def copy_reference(results: dict[str, Any]) -> float | None:
    """The run's in-process copy time: median over the systems' W4 ``arr.copy()`` medians."""
    vals = []
    for s in results["systems"].values():
        m = ((_wl(s, "W4") or {}).get("metrics") or {}).get("copy") or {}
        if "median_s" in m:
            vals.append(m["median_s"])
    return statistics.median(vals) if vals else None


def _vs_copy(key: str, ref: float | None) -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        entry = _wl(sysres, "W4")
        if entry is None or entry.get("status") != "ok":
            return None, _na(entry, sysres)
        m = entry["metrics"]
        keys = ["arg", "put_arg"] if key == "best_arg" else [key]
        times = [m[k]["median_s"] for k in keys if "median_s" in (m.get(k) or {})]
        if not times or not ref:
            return None, "—"
        r = min(times) / ref
        return r, f"{r:.1f}× copy"

    return get


def _yesno(key: str) -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        entry = _wl(sysres, "W6")
        if entry is None or entry.get("status") != "ok":
            return None, _na(entry, sysres)
        c = entry["metrics"].get(key, {})
        return None, "yes" if c.get("ok") else "no"

    return get


def _cold(field: str) -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        cold = sysres.get("cold")
        if not cold:
            return None, "n/a" if sysres.get("status") == "n/a" else "not run"
        runs = [r for r in cold.get("runs", []) if r.get("status") == "ok"]
        if not runs:
            return None, cold.get("runs", [{}])[-1].get("status", "error")
        vals = [r["wall_s"] if field == "wall_s" else r["start_s"] + r["first_result_s"] for r in runs]
        v = statistics.median(vals)
        return v, f"{v:.2f} s"

    return get


def _w8(key: str, fmt: str, unit: str) -> Callable[[dict[str, Any]], Cell]:
    """W8 exists where futures have a live display (flame-magics); elsewhere there is none."""

    def get(sysres: dict[str, Any]) -> Cell:
        entry = _wl(sysres, "W8")
        if entry is None or entry.get("status") == "skipped":
            return None, "n/a (no live display)" if sysres.get("status") == "ok" else _na(entry, sysres)
        return _metric("W8", [key], fmt, unit)(sysres)

    return get


def _peak(w: str | None) -> Callable[[dict[str, Any]], Cell]:
    def get(sysres: dict[str, Any]) -> Cell:
        if w is None:
            v = sysres.get("peak_rss_mb")
        else:
            entry = _wl(sysres, w) or {}
            v = entry.get("peak_rss_mb")
        if not v:
            return None, "—" if sysres.get("status") != "n/a" else "n/a"
        return float(v), f"{v:,.0f} MB"

    return get


def metrics(sizes: dict[str, Any], copy_ref: float | None = None) -> list[Metric]:
    w2, w3, w4, w5, w7 = (sizes.get(k, {}) for k in ("W2", "W3", "W4", "W5", "W7"))
    mb4, mb7 = w4.get("mb", "?"), w7.get("mb", "?")
    return [
        Metric(
            "w1_total", "W1 cold start: process start → first result → shutdown", "lower", _cold("wall_s")
        ),
        Metric("w1_ready", "W1 of which runtime start + first result", "lower", _cold("ready")),
        Metric(
            "w2_p50",
            f"W2 round trip p50 ({w2.get('n', '?')}× inc)",
            "lower",
            _metric("W2", ["p50_ms"], ".2f", " ms"),
        ),
        Metric("w2_p99", "W2 round trip p99", "lower", _metric("W2", ["p99_ms"], ".2f", " ms")),
        Metric(
            "w3_tps",
            f"W3 throughput ({w3.get('n', '?')} tasks at once)",
            "higher",
            _metric("W3", ["tasks_per_s"], ",.0f", " tasks/s"),
        ),
        Metric("w4_arg", f"W4 {mb4} MB array as plain argument → sum", "lower", _transfer("W4", "arg")),
        Metric(
            "w4_put", f"W4 {mb4} MB array via put/object store → sum", "lower", _transfer("W4", "put_arg")
        ),
        Metric("w4_ret", f"W4 {mb4} MB array returned and fetched", "lower", _transfer("W4", "ret")),
        Metric("w4_copy", f"W4 reference: in-process arr.copy() of {mb4} MB", "", _transfer("W4", "copy")),
        Metric(
            "w4_arg_x",
            "W4 best argument path ÷ run's copy time (flame target ≤ 2×)",
            "lower",
            _vs_copy("best_arg", copy_ref),
        ),
        Metric(
            "w4_ret_x",
            "W4 result fetch ÷ run's copy time (flame target ≤ 2×)",
            "lower",
            _vs_copy("ret", copy_ref),
        ),
        Metric(
            "w5_p50",
            f"W5 actor add() p50 ({w5.get('n', '?')} sequential)",
            "lower",
            _metric("W5", ["p50_ms"], ".2f", " ms"),
        ),
        Metric("w5_p99", "W5 actor add() p99", "lower", _metric("W5", ["p99_ms"], ".2f", " ms")),
        Metric("w6_closure", "W6 closure over a __main__ global works", "", _yesno("closure")),
        Metric("w6_dataclass", "W6 __main__ dataclass in and out", "", _yesno("dataclass")),
        Metric("w6_rebind", "W6 call sees a rebound global", "", _yesno("rebind")),
        Metric(
            "w7_first",
            f"W7 call over a {mb7} MB global: first",
            "lower",
            _metric("W7", ["first_s"], ".2f", " s"),
        ),
        Metric("w7_repeat", "W7 same call again", "lower", _metric("W7", ["repeat_s"], ".2f", " s")),
        Metric(
            "w8_cpu",
            "W8 2,000 live future widgets: kernel CPU (target < 10 % of a core)",
            "",
            _w8("cpu_pct", ".1f", " % of a core"),
        ),
        Metric(
            "w8_msgs", "W8 comm messages/s while they update", "", _w8("comm_msgs_per_s", ",.0f", " msg/s")
        ),
        Metric("w4_peak", "Peak RSS driver+workers during W4", "lower", _peak("W4")),
        Metric("peak_all", "Peak RSS driver+workers, W2–W7", "lower", _peak(None)),
    ]


def table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: each cell is the figure and, where it has one, ×ratio to the row's best."""
    systems = list(results["systems"])
    rows: list[list[str]] = []
    selected = {w.lower() for w in results.get("workloads", [])}
    for m in metrics(results.get("sizes", {}), copy_reference(results)):
        if m.key[:2] in {f"w{i}" for i in range(1, 9)} and selected and m.key[:2] not in selected:
            continue
        cells = [m.get(results["systems"][s]) for s in systems]
        nums = [v for v, _ in cells if v is not None and math.isfinite(v) and v > 0]
        best = (min(nums) if m.better == "lower" else max(nums)) if nums and m.better else None
        row = [m.label]
        for v, text in cells:
            if best is not None and v is not None and v > 0:
                ratio = v / best if m.better == "lower" else best / v
                text = f"{text} (×{ratio:.1f})" if ratio >= 1.005 else f"**{text}** (best)"
            row.append(text)
        rows.append(row)
    return ["figure", *systems], rows


def console(results: dict[str, Any]) -> str:
    header, rows = table(results)
    rows = [[c.replace("**", "") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(out)


def _reasons(results: dict[str, Any]) -> list[str]:
    """Every n/a, error, timeout and failed W6 check, with its reason."""
    out: list[str] = []
    for name, s in results["systems"].items():
        if s.get("reason"):
            out.append(f"- **{name}**: {s['status']}: {s['reason']}")
        for r in (s.get("cold") or {}).get("runs", []):
            if r.get("status") != "ok":
                out.append(f"- **{name}** W1: {r.get('status')}: {r.get('reason', '')}")
                break
        for w, e in (s.get("workloads") or {}).items():
            if e.get("status") not in ("ok", "skipped"):
                out.append(f"- **{name}** {w}: {e.get('status')}: {e.get('reason', '')}")
            for k, v in (e.get("metrics") or {}).items():
                if isinstance(v, dict) and v.get("status") in ("n/a", "error"):
                    out.append(f"- **{name}** {w} {k}: {v['status']}: {v.get('reason', '')}")
                if w == "W6" and isinstance(v, dict) and v.get("ok") is False:
                    out.append(f"- **{name}** W6 {k}: no: {v.get('detail', '')}")
        if s.get("leaked"):
            out.append(
                f"- **{name}**: {len(s['leaked'])} leftover process(es) killed after the run: {s['leaked']}"
            )
    return out


def markdown(results: dict[str, Any], raw_path: str = "") -> str:
    m = results["machine"]
    header, rows = table(results)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/run.py; do not edit by hand. -->",
        "",
        f"Run {results['date']} ({'smoke sizes' if results.get('smoke') else 'full sizes'}), "
        f"`{results['command']}`. Each cell: the figure and its ratio to the best system in this run "
        "(×1.0 = best; for throughput the ratio is best ÷ this). "
        "Benchmarks, not tests: one run on a shared, noisy 2-core machine; compare ratios, not absolutes. "
        "What each figure means: [benchmarks/README.md](../benchmarks/README.md).",
        "",
        _md_table(header, rows),
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']} — {m['cpus']} logical CPUs ({m['cpus_usable']} usable)",
        f"- RAM: {m['ram_gb']:.1f} GB",
        f"- OS: {m['os']} (kernel {m['kernel']})",
        f"- Python: {m['python']}",
        f"- Load average at start / end: {m.get('loadavg_start')} / {m.get('loadavg_end')}",
        f"- Commit: {m.get('git', '?')}",
    ]
    if m.get("env_notes"):
        lines.append(f"- Environment: {m['env_notes']}")
    lines += ["", "## Systems", ""]
    for name, s in results["systems"].items():
        vers = ", ".join(f"{k} {v}" for k, v in sorted((s.get("versions") or {}).items()))
        lines.append(f"- **{name}** ({s.get('python', '?')}): {vers or '—'}")
        for note in s.get("notes") or []:
            lines.append(f"  - {note}")
    reasons = _reasons(results)
    if reasons:
        lines += ["", "## n/a, errors and “no” answers", "", *reasons]
    lines += ["", "## Peak memory per workload (RSS sum of driver + all its descendant processes)", ""]
    systems = list(results["systems"])
    mem_rows = []
    for w in ("W2", "W3", "W4", "W5", "W6", "W7"):
        row = [w]
        for name in systems:
            e = _wl(results["systems"][name], w) or {}
            row.append(
                f"{e['peak_rss_mb']:,.0f} MB ({e.get('peak_procs', '?')} procs)"
                if e.get("peak_rss_mb")
                else "—"
            )
        mem_rows.append(row)
    lines += [_md_table(["workload", *systems], mem_rows), ""]
    ref = copy_reference(results)
    if ref:
        lines += [
            f"The run's copy time (median over systems of each process's `arr.copy()` median) is {ref:.3f} s; "
            "the first large allocation in a process, and any that faults in fresh pages, is much slower "
            "than one that reuses freed memory, so single figures vary a lot on this machine.",
            "",
        ]
    lines += [
        "Shared memory (Ray's object store, copy-on-write pages after fork) is counted once per process "
        "that maps it, so sums over-count for those systems.",
        "",
    ]
    if raw_path:
        lines += [f"Raw results: `{raw_path}` (not committed).", ""]
    return re.sub(r"(?<!`)__main__(?!`)", "`__main__`", "\n".join(lines))  # not bold "main"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results")
    p.add_argument("--md", help="also write this markdown file")
    a = p.parse_args(argv)
    with open(a.results) as f:
        results = json.load(f)
    print(console(results))
    if a.md:
        with open(a.md, "w") as f:
            f.write(markdown(results, a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
