"""flame_jupyter loads flamepy's client without FastAPI/uvicorn and without pandas until used,
and a process that then uses flamepy or pandas sees both whole (``_lean_flamepy.lean_import``)."""

from __future__ import annotations

import subprocess
import textwrap

from tests.conftest import PYTHON

SCRIPT = """
import sys
import flame_jupyter as fj
from flame_jupyter import futures, runner  # the client's whole import graph
print("lean", "fastapi" in sys.modules, "uvicorn" in sys.modules, "pandas" in sys.modules)
import flamepy
print("package", flamepy.FlameError.__name__, flamepy.runner.Runner.__name__, flamepy.service.FlameInstance.__name__)
from flamepy.core import cache
import pandas as pd
df = pd.DataFrame({"a": [1, 2]})
print("pandas", cache.pd.DataFrame is pd.DataFrame, cache._serialize_object_data(df)[:3] == b"FLM")
import requests
print("requests", callable(requests.get))
"""


def test_lean_import_then_whole_packages_on_use() -> None:
    out = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out == [
        "lean False False False",
        "package FlameError Runner FlameInstance",
        "pandas True True",
        "requests True",
    ], out


def test_lean_import_can_be_turned_off() -> None:
    out = subprocess.run(
        [PYTHON, "-c", "import sys, flame_jupyter.futures; print('fastapi' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"FLAME_JUPYTER_LEAN_IMPORT": "0", "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert out == ["True"], out
