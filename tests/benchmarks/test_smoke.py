"""The benchmark command works from a clean checkout: a smoke run of the flame systems.

Benchmarks are not tests: nothing here looks at a time. It checks that every workload of every
flame system ran and produced its figures, that results are correct (W6), and that the run left
no process behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, REPO


def test_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [PYTHON, str(REPO / "benchmarks" / "run.py"), "--smoke", "--no-install", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "W2 round trip p50" in proc.stdout  # the table was printed
    results = json.loads(out.read_text())["systems"]
    assert set(results) == {"flame-sdk", "flame-magics", "flame", "processpool"}
    for name, res in results.items():
        assert res["status"] == "ok", (name, res.get("reason"))
        assert not res.get("leaked"), (name, res["leaked"])
        assert all(r["status"] == "ok" for r in res["cold"]["runs"]), (name, res["cold"])
        if name.startswith("flame"):  # the floor (processpool) cannot do W7: forked workers miss BIG
            for w, entry in res["workloads"].items():
                assert entry["status"] in ("ok", "n/a", "skipped"), (name, w, entry)
    sdk, magics = results["flame-sdk"]["workloads"], results["flame-magics"]["workloads"]
    for w in ("W2", "W3", "W4", "W5", "W6", "W7"):
        assert sdk[w]["status"] == "ok", (w, sdk[w])
    assert sdk["W2"]["metrics"]["p50_ms"] > 0 and sdk["W3"]["metrics"]["tasks_per_s"] > 0
    assert all(v["ok"] for v in sdk["W6"]["metrics"].values()), sdk["W6"]
    assert all(v["ok"] for v in magics["W6"]["metrics"].values()), magics["W6"]
    assert magics["W2"]["metrics"]["n"] == magics["W2"]["metrics"]["n_wanted"]
    assert magics["W8"]["metrics"]["futures"] > 0 and "cpu_pct" in magics["W8"]["metrics"]
    assert magics["W3"]["status"] == "n/a"
