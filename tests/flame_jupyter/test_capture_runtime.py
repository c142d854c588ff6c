"""Captured code through the real flamepy Runner against the embedded runtime (end to end).

A plain script plays the notebook (its ``__main__`` is the namespace). Large values go to the
runtime's real object cache through ``FlameObjectStore`` and executors fetch them with
flamepy's ``get_object``.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("flame_local")

from tests.conftest import PYTHON  # noqa: E402

SCRIPT = """
import numpy as np
from flamepy.runner import Runner
from flame_jupyter.capture import Capturer, FlameObjectStore

RATE = 2
BIG = np.ones(300_000)  # 2.4 MB: travels through the object cache

def helper(x):
    return x * RATE

def score(x):
    return helper(x) + float(BIG.sum())

class Counter:
    def __init__(self, start):
        self.n = start
    def add(self, k):
        self.n += k * RATE
        return self.n

class Model:
    def predict(self, x):
        return helper(x) + 1

cap = Capturer(store=FlameObjectStore("fjcapture/objects"), threshold=1 << 20)

def call(service, captured, *args, method=None):
    a, k = captured.prepare_call(args, {})
    target = service if method is None else getattr(service, method)
    return target(*a, **k)

with Runner("fj-capture-app") as rr:
    fn = cap.capture(score)
    svc = rr.service(fn.execution_object)
    print(call(svc, fn, 1).get())
    RATE = 3
    print(call(svc, fn, 1).get())

    inst = cap.capture(Counter(10))
    cs = rr.service(inst.execution_object)
    call(cs, inst, 1, method="add")
    print(call(cs, inst, 2, method="add").get())

    cls = cap.capture(Model)
    ms = rr.service(cls.execution_object)
    print(call(ms, cls, 5, method="predict").get())
print("uploads", len(cap._uploaded))
"""


def test_runner_end_to_end(tmp_path: Path, script_env: dict[str, str]) -> None:
    script = tmp_path / "notebook_like.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=script_env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines() == ["300002.0", "300003.0", "19", "16", "uploads 1"]
