"""Warm instance processes: interpreters that already imported flamepy, ready to become instances.

Starting ``python -m flamepy.runner.runpy`` costs most of a second, nearly all of it imports.
The pool keeps ``size`` interpreters that did those imports (:mod:`flame_local.executors.warm_instance`);
an instance whose command is ``<runtime python> -m <module> ...`` takes one and hands it its
environment, working directory and log files instead of starting from nothing.  Anything else
(another interpreter, extra ``PYTHON*`` variables, installed dependencies that could shadow the
preloaded modules) starts cold, as before. A replacement is warmed only while the runtime is
idle, so warming never takes CPU from running tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flame_local.executors.orphans import orphan_guard

_START_ENV_KEYS = ("PYTHONPATH",)


class WarmPool:
    """Keeps ``size`` warm interpreters of ``python``; thread-safe."""

    def __init__(
        self, python: str, size: int, env: dict[str, str], idle: Callable[[], bool] | None = None
    ) -> None:
        self.python = python
        self.size = size
        self._idle = idle or (lambda: True)
        self._env = {k: v for k, v in env.items() if k not in _START_ENV_KEYS}
        self._ready: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._fill_loop, name="flame-local-warm", daemon=True)

    def start(self) -> None:
        if self.size > 0 and not _has_flame_local(self.python, self._env):
            self.size = 0  # an executor interpreter without flame_local: every instance starts cold
        if self.size > 0:
            self._thread.start()
            self._wake.set()

    def eligible(self, argv: list[str], env: dict[str, str]) -> bool:
        """Can ``argv`` with ``env`` run in a warm interpreter with the same result?"""
        if self.size <= 0 or len(argv) < 3 or argv[0] != self.python or argv[1] != "-m":
            return False
        mine = {k: v for k, v in self._env.items() if k.startswith("PYTHON")}
        theirs = {k: v for k, v in env.items() if k.startswith("PYTHON") and k not in _START_ENV_KEYS}
        return mine == theirs

    def take(
        self, argv: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path
    ) -> tuple[subprocess.Popen[bytes], bool] | None:
        """Turn an interpreter into ``argv``: a warm one if ready, else a fresh one (it imports
        now, as a cold start would, but still serves the framed shim). Returns the process and
        whether it was warm; None if no interpreter could be started (start cold then)."""
        with self._lock:
            proc = None
            while self._ready and proc is None:
                candidate = self._ready.pop(0)
                if candidate.poll() is None:
                    proc = candidate
        self._wake.set()
        warm = proc is not None
        if proc is None:
            proc = self._spawn()
        if proc is None:
            return None
        request = {"module": argv[2], "args": argv[3:], "cwd": str(cwd), "env": env,
                   "stdout": str(stdout), "stderr": str(stderr), "framed": True}  # fmt: skip
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            proc.kill()
            proc.wait(5)
            return None
        return proc, warm

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._ready]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        self._wake.set()
        for proc in ready:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
        for proc in ready:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread.is_alive():
            self._thread.join(5)

    def _fill_loop(self) -> None:
        # Runs for the runtime's whole life: the warm processes' parent-death signal is tied to it.
        first = True  # the first one starts at once: it warms while the client sets up
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    if self._closed:
                        return
                    self._ready = [p for p in self._ready if p.poll() is None]
                    if len(self._ready) >= self.size:
                        break
                if not first and not self._wait_idle():
                    return
                first = False
                proc = self._spawn()
                if proc is None:
                    return
                with self._lock:
                    if self._closed:
                        proc.kill()
                        proc.wait(5)
                        return
                    self._ready.append(proc)

    def _wait_idle(self, quiet: float = 0.5, step: float = 0.1) -> bool:
        """Wait until the runtime has run nothing for ``quiet`` seconds: warming costs a second
        of CPU, which must not be taken from the user's tasks. False once closed."""
        calm = 0.0
        while calm < quiet:
            if self._closed:
                return False
            calm = calm + step if self._idle() else 0.0
            time.sleep(step)
        return not self._closed

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        argv, preexec = orphan_guard([self.python, "-m", "flame_local.executors.warm_instance"])
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self._env,
                cwd=os.path.dirname(self.python) or "/",
                start_new_session=True,
                preexec_fn=preexec,  # type: ignore[arg-type]
            )
        except OSError:
            return None


def _has_flame_local(python: str, env: dict[str, str]) -> bool:
    """Can ``python`` run :mod:`flame_local.executors.warm_instance`? (The runtime's own interpreter can.)"""
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: venvs share it
        return True
    try:
        probe = subprocess.run(
            [python, "-c", "import flame_local.executors.warm_instance"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0
