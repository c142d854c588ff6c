"""The runtime as a separate process: start it, learn its endpoints, stop it by PID.

The notebook extension and ``flame-local start`` use this; ``die_with_parent`` ties the runtime
to the process that started it (Linux parent-death signal), so a killed kernel leaves no runtime
and, through the runtime's own guard, no instance behind.

Example
-------
>>> rp = RuntimeProcess.start(max_instances=2)    # doctest: +SKIP
>>> rp.endpoint, rp.cache_endpoint                  # doctest: +SKIP
('http://127.0.0.1:40123', 'grpc://127.0.0.1:40125')
>>> rp.stop()                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_SETPRIV = shutil.which("setpriv")


#: Subdirectory of the runtime's home that is its object cache's ``cache.storage`` (Flame's disk
#: layout, ``cache/storage.py``): a same-host writer may put native Arrow objects there as files.
CACHE_STORAGE_DIR = "storage"


class RuntimeStartError(RuntimeError):
    """The runtime process exited or did not become ready; the message carries its log tail."""


@dataclass
class RuntimeProcess:
    pid: int
    endpoint: str
    cache_endpoint: str
    home: str
    log_path: str
    _proc: subprocess.Popen[bytes] | None = None
    temp_home: bool = False  # the runtime created its home (a temp dir) and removes it
    socket_dir: str = ""
    storage_dir: str = ""  # the object cache's storage folder, as the runtime reported it

    @classmethod
    def start(
        cls,
        *,
        home: str | os.PathLike[str] | None = None,
        max_instances: int | None = None,
        port: int = 0,
        cache_port: int = 0,
        die_with_parent: bool = True,
        timeout: float = 60.0,
        python: str | None = None,
        cache_budget: str | None = None,
    ) -> RuntimeProcess:
        """Start ``python -m flame_local.cli start --foreground`` and wait until it serves."""
        state_dir = Path(tempfile.mkdtemp(prefix="flame-local-ready-"))
        ready = state_dir / "ready.json"
        log_path = state_dir / "runtime.log"
        argv = [
            python or sys.executable,
            "-m",
            "flame_local.cli",
            "start",
            "--foreground",
            "--ready-file",
            str(ready),
        ]
        argv += ["--port", str(port), "--cache-port", str(cache_port), "--no-config"]
        if home is not None:
            argv += ["--home", str(home)]
        if max_instances is not None:
            argv += ["--max-instances", str(max_instances)]
        if cache_budget is not None:
            argv += ["--cache-budget", str(cache_budget)]
        if die_with_parent:  # SIGHUP when the parent dies: stop at once, remove the log dir
            argv.append("--owned")
        if die_with_parent and _SETPRIV:
            argv = [_SETPRIV, "--pdeathsig", "HUP", "--", *argv]
        with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group always: Jupyter interrupts and kills a kernel by signalling
                # the kernel's whole group, which must not stop (or SIGKILL) the runtime with it.
                start_new_session=True,
                preexec_fn=_term_with_parent if die_with_parent and not _SETPRIV else None,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeStartError(f"flame-local exited with code {proc.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise RuntimeStartError(f"flame-local did not start within {timeout:.0f}s: {_tail(log_path)}")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        return cls(
            pid=proc.pid,
            endpoint=info["endpoint"],
            cache_endpoint=info["cache_endpoint"],
            home=info["home"],
            log_path=str(log_path),
            _proc=proc,
            temp_home=bool(info.get("temp_home", home is None)),
            socket_dir=str(info.get("socket_dir", "")),
            storage_dir=str(info.get("cache_storage", "")),
        )

    @property
    def cache_storage(self) -> str:
        """The object cache's storage directory (on this host only; tmpfs when there is one)."""
        return self.storage_dir or os.path.join(self.home, CACHE_STORAGE_DIR)

    def client_env(self) -> dict[str, str]:
        return {"FLAME_ENDPOINT": self.endpoint, "FLAME_CACHE_ENDPOINT": self.cache_endpoint}

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful: running tasks get the runtime's grace period), then SIGKILL;
        then remove the directory holding the runtime's log."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
        else:
            terminate_pid(self.pid, timeout)
        remove_state_dir(self.log_path)


def _term_with_parent() -> None:  # in the child before exec, when setpriv is missing
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGHUP)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; the parent's atexit still stops it
        pass


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (the usual 1024 is a few hundred
    clients); returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def steady_malloc(threshold: int = 256 << 10) -> None:
    """Fix glibc's mmap threshold: blocks above it (cache payloads arrive in gRPC's malloc'd
    buffers) are mapped and unmapped on their own, so memory the cache spills or deletes goes back
    to the system (glibc otherwise raises the threshold and keeps freed payloads in its heap)."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def remove_state_dir(log_path: str) -> None:
    """Remove the ``flame-local-ready-*`` directory that holds a runtime's log."""
    state_dir = Path(log_path).parent
    if state_dir.name.startswith("flame-local-ready-"):
        shutil.rmtree(state_dir, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def terminate_pid(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout``, then SIGKILL. True if it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.2)
    return not pid_alive(pid)


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
