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


NETWORK_TROUBLE = ("Could not find a version", "No matching distribution", "Failed to establish", "Network is unreachable", "Temporary failure in name resolution")  # fmt: skip


def test_a_plain_install_in_a_fresh_venv_gives_widgets(tmp_path: Path) -> None:
    """``pip install <repo>`` (no extras) in a fresh venv: the front-end extensions JupyterLab and
    Notebook 7 load prebuilt from ``<venv>/share/jupyter/labextensions`` are there (ipywidgets'
    manager, anywidget), and a kernel of that venv shows a ``%%flame`` cell as a live widget."""
    venv = tmp_path / "plain-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = subprocess.run(
        [py, "-m", "pip", "install", "--quiet", str(REPO)], capture_output=True, text=True, timeout=900
    )
    if pip.returncode != 0 and any(t in pip.stderr for t in NETWORK_TROUBLE):
        pytest.skip(f"no package index reachable: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr[-3000:]
    labext = venv / "share" / "jupyter" / "labextensions"
    for ext in ("anywidget", "@jupyter-widgets/jupyterlab-manager"):
        assert (labext / ext / "package.json").is_file(), sorted(p.name for p in labext.iterdir())
    assert (venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").is_file()

    from tests.kernel_helpers import KernelSession

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "FLAME_ENDPOINT": "", "FLAME_CACHE_ENDPOINT": "", "FLAME_JUPYTER_WIDGETS": ""}
    with KernelSession(cwd=tmp_path, python=py, extra_env=env) as k:
        assert k.run("%load_ext flame_jupyter", timeout=180).stdout.startswith("flame_jupyter: embedded")
        r = k.run("%%flame --label plain\n6 * 7", timeout=180)
        final = r.result or {}
        assert "application/vnd.jupyter.widget-view+json" in final and "42" in final["text/plain"], final
        opened = [m["content"] for m in r.messages if m["msg_type"] == "comm_open"]
        assert any("_esm" in (c.get("data", {}).get("state") or {}) for c in opened), opened  # anywidget
