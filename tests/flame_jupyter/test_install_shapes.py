"""What a plain install gives: the notebook experience by default, and an SDK that needs no IPython."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_STACK = ("ipython", "ipykernel", "ipywidgets", "anywidget")

pytestmark = pytest.mark.timeout(600)


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_a_plain_install_brings_the_kernel_and_the_widgets() -> None:
    names = {d.split("==")[0].lower() for d in _project()["dependencies"]}
    assert set(NOTEBOOK_STACK) <= names, names


def test_the_sdk_runs_where_ipython_is_absent(tmp_path: Path) -> None:
    """A venv with flame_jupyter's dependencies minus the notebook stack: a Runner call works."""
    venv = tmp_path / "sdk-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    deps = [
        d
        for d in _project()["dependencies"]
        if d.split("==")[0].lower() not in {*NOTEBOOK_STACK, "psygnal", "traitlets"}
    ]
    subprocess.run([py, "-m", "pip", "install", "--quiet", *deps], check=True, timeout=600)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", str(REPO)], check=True, timeout=600)
    script = tmp_path / "sdk.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from flame_local import LocalRuntime
            rt = LocalRuntime(max_instances=1).start()
            os.environ.update(rt.client_env())
            os.environ.pop("FLAME_CACHE_STORAGE", None)
            import flame_jupyter as fj

            def square(x):
                return x * x

            try:
                with fj.Runner("no-ipython") as rr:
                    f = rr.service(square)(7)
                    print(f.get(120), f.state, repr(f)[:14])
                    print(f._repr_mimebundle_()["text/plain"][:40].replace("\\n", " "))
            finally:
                rt.stop()
            print("IPython" in sys.modules)
            """
        )
    )
    probe = subprocess.run([py, "-c", "import IPython"], capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0, "the venv must not have IPython"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [py, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "49 done <ObjectFuture ", lines
    assert lines[-1] == "False", lines
