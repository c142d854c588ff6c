"""Start and stop a real JupyterLab (or Notebook 7) server on 127.0.0.1 for browser tests.

Follows /work/shared/docs/browser-testing.md: fresh config/runtime/settings/workspace dirs, news
toast off, ``--allow-root``, a fixed token, ``port_retries=0`` on a free loopback port, readiness by
polling ``/api/status``, and cleanup by PID only (TERM, then KILL, then any recorded descendant:
kernels and the embedded Flame runtime they started).

    with LabServer(work_dir) as lab:
        page.goto(lab.url("lab/tree/widgets_live.ipynb?reset"))
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

TOKEN = "flame-widget-test-token"
READY_TIMEOUT = 120.0
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A jupyter lab process (it also serves the Notebook 7 UI at /notebooks/)."""

    def __init__(self, work: Path, notebooks: dict[str, Path] | None = None) -> None:
        self.work = work
        self.root = work / "root"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work / "jupyter.log"
        self.notebooks = notebooks or {}
        self.descendants: set[int] = set()

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={TOKEN}"

    # -- start ----------------------------------------------------------------------------------------
    def start(self) -> LabServer:
        self.root.mkdir(parents=True, exist_ok=True)
        for name, src in self.notebooks.items():
            shutil.copy(src, self.root / name)
        env = self._env()
        settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        cmd = [
            str(BIN / "jupyter"),
            "lab",
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}api/status?token={TOKEN}", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter lab not ready within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLAME_", "JUPYTER", "IPYTHON"))}
        for name in ("config", "runtime", "ipython", "settings", "workspaces", "home"):
            (self.work / name).mkdir(parents=True, exist_ok=True)
        env.update(
            HOME=str(self.work / "home"),  # no ~/.flame/flame.yaml: the notebook starts the embedded runtime
            JUPYTER_CONFIG_DIR=str(self.work / "config"),
            JUPYTER_RUNTIME_DIR=str(self.work / "runtime"),
            IPYTHONDIR=str(self.work / "ipython"),
            JUPYTERLAB_SETTINGS_DIR=str(self.work / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.work / "workspaces"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        return env

    def record_descendants(self) -> None:
        """Remember the server's children (kernels, the runtime they started) to clean up by PID."""
        if self.proc is None:
            return
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.add(child.pid)
        except psutil.NoSuchProcess:
            pass

    # -- stop -----------------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proc is None:
            return
        self.record_descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        for pid in sorted(self.descendants):
            try:
                p = psutil.Process(pid)
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            except psutil.NoSuchProcess:
                pass
        self.proc = None
        self._log.close()

    def shutdown_kernels(self, path: str) -> int:
        """Shut down the kernel sessions of a notebook (REST API); returns how many."""
        req = urllib.request.Request(f"{self.base}api/sessions?token={TOKEN}")
        with urllib.request.urlopen(req, timeout=10) as r:
            sessions = json.loads(r.read())
        n = 0
        for s in sessions:
            if s.get("path") == path:
                self.record_descendants()
                delete = urllib.request.Request(
                    f"{self.base}api/sessions/{s['id']}?token={TOKEN}", method="DELETE"
                )
                with urllib.request.urlopen(delete, timeout=30):
                    n += 1
        return n

    def alive_descendants(self) -> list[int]:
        return [pid for pid in self.descendants if psutil.pid_exists(pid) and _not_zombie(pid)]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
