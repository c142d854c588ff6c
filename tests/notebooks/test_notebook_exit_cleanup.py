"""Notebook 04 on a shared Flame, then a normal kernel shutdown: nothing of it stays open.

jupyter_client's normal shutdown sends ``shutdown_request`` and kills the kernel a few seconds
later (``shutdown_wait_time``, half of it before SIGTERM); the kernel's exit cleanup must close its
sessions and application within that window. Checked against the runtime's session and
application lists (the runtime is the test session's, reached as a cluster).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import flamepy
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from tests.notebooks.nb_helpers import NOTEBOOKS, kernel_env

# Appended by the test: a call that is still running when the kernel shuts down (the notebook's
# own race leaves its 3 s "slow" call running too, by less), and the kernel's pid.
RUNNING_CELL = """
import time
still_running = sleepy_svc(20.0, "long")
for _ in range(600):  # at most 30 s
    if still_running.state == "running":
        break
    time.sleep(0.05)
still_running.state
"""
PID_CELL = "import os\nos.getpid()"


def _left_by(pid: int) -> tuple[list[str], list[str]]:
    token = f"-{pid}-"
    sessions = [
        s.id for s in flamepy.list_sessions() if token in s.id and s.state == flamepy.SessionState.OPEN
    ]
    apps = [a.name for a in flamepy.list_applications() if a.name.startswith("fj-") and token in a.name]
    return sessions, apps


def test_notebook_04_leaves_nothing_open_after_a_normal_shutdown(tmp_path: Path, runtime: Any) -> None:
    nb = nbformat.read(NOTEBOOKS / "04-data-and-futures.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(RUNNING_CELL))
    nb.cells.append(nbformat.v4.new_code_cell(PID_CELL))
    home = tmp_path / "home"
    home.mkdir()
    spec_dir = tempfile.mkdtemp(prefix="fj-nb-exit-")
    (Path(spec_dir) / "fj-exit").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "language": "python",
    }
    (Path(spec_dir) / "fj-exit" / "kernel.json").write_text(json.dumps({**spec, "display_name": "fj-exit"}))
    km = AsyncKernelManager(
        kernel_name="fj-exit", kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec_dir])
    )
    client = NotebookClient(nb, km=km, timeout=180, startup_timeout=120)
    try:
        client.execute(env={**kernel_env(home), **runtime.client_env()}, cwd=str(tmp_path))
        assert nb.cells[-2].outputs[-1].data["text/plain"] == "'running'"
        pid = int(nb.cells[-1].outputs[0].data["text/plain"])
        sessions, apps = _left_by(pid)
        assert sessions and apps, "the notebook opened sessions of its own application"
        # The shutdown must cancel the running calls before Flame lets their sessions close.
        run_sync(km.shutdown_kernel)(now=False)
    finally:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
        shutil.rmtree(spec_dir, ignore_errors=True)
    assert _left_by(pid) == ([], []), "sessions / application left open after a normal shutdown"
