"""Executors need flamepy and dill, not flame_jupyter: prove it with a separate venv.

A fresh virtual environment gets only ``flamepy==0.6.0`` and ``dill`` (and numpy for the data
case); the embedded runtime runs its instances with that interpreter; the SDK, in this
environment, serves notebook-style code on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO


@pytest.fixture(scope="module")
def executor_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    venv = tmp_path_factory.mktemp("executor-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pins = [
        line
        for line in (REPO / "pyproject.toml").read_text().splitlines()
        if '"flamepy==' in line or '"dill==' in line or '"numpy==' in line
    ]
    reqs = [p.strip().strip('",') for p in pins]
    assert any(r.startswith("flamepy==") for r in reqs) and any(r.startswith("dill==") for r in reqs), reqs
    subprocess.run([py, "-m", "pip", "install", "--quiet", *reqs], check=True, timeout=600)
    probe = subprocess.run(
        [py, "-c", "import flame_jupyter"], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert probe.returncode != 0 and "No module named 'flame_jupyter'" in probe.stderr
    return py


def test_sdk_calls_run_on_executors_without_flame_jupyter(
    executor_python: str, tmp_path: Path, flame_home: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from flame_local import LocalRuntime
            rt = LocalRuntime(max_instances=2, python={executor_python!r}).start()
            os.environ.update(rt.client_env())
            import flame_jupyter as fj
            from dataclasses import dataclass

            @dataclass
            class Item:
                name: str
                qty: int

            TAX = 0.2
            def total(items):
                import sys
                assert "flame_jupyter" not in sys.modules, "the executor imported flame_jupyter"
                fj.progress(1, 1, "summing")
                print("executor python:", sys.executable)
                return round(sum(i.qty for i in items) * (1 + TAX), 2)

            class Tally:
                def __init__(self):
                    self.n = 0
                def add(self, k):
                    self.n += k
                    return self.n

            try:
                with fj.Runner() as rr:
                    f = rr.service(total)([Item("a", 2), Item("b", 3)])
                    print(f.get())
                    print("".join(t for _, t in f.output).strip())
                    t = rr.service(Tally())
                    t.add(1)
                    print(t.add(2).get())
                    bad = rr.service(lambda: 1 / 0)()
                    try:
                        bad.get()
                    except ZeroDivisionError as e:
                        print("ZeroDivisionError", "1 / 0" in e.remote_traceback)
            finally:
                fj.disconnect()
                rt.stop()
            """
        )
    )
    env = dict(os.environ, HOME=str(flame_home))
    env.pop("FLAME_ENDPOINT", None)
    env.pop("FLAME_CACHE_ENDPOINT", None)
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "6.0"
    assert lines[1] == f"executor python: {executor_python}"
    assert lines[2] == "3"
    assert lines[3] == "ZeroDivisionError True"
