"""Tools of the reliability suite: process trees, resource counts, a runtime in its own process,
client scripts, and the figures the tests report.

Everything is bounded in time, and only processes the tests started are signalled (by PID).
``FLAME_SLOW_TESTS=1`` selects the soak variants (bigger than the always-on ones); ``FLAME_RELIABILITY_REPORT=<file>``
collects every reported figure as JSON lines (what docs/reliability.md quotes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.polling import wait_for  # noqa: F401 - re-exported for the reliability tests

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SLOW = os.environ.get("FLAME_SLOW_TESTS") == "1"
_SETPRIV = shutil.which("setpriv")

T = TypeVar("T")


def report(case: str, **figures: Any) -> None:
    """Print one case's figures (``pytest -s`` shows them) and append them to the report file."""
    line = json.dumps({"case": case, **figures}, default=str)
    print(f"FIGURE {line}")
    path = os.environ.get("FLAME_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def median(values: Iterable[float]) -> float:
    return round(statistics.median(list(values)), 3)


# -- processes --------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and int(st[1]) == pid and st[0] not in ("Z", "X"):
                out.add(int(entry.name))
    return out


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] not in ("Z", "X"):
                parents.setdefault(int(st[1]), []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def entries(root: Path) -> set[str]:
    """Every file and directory below ``root``, relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


class RssSampler:
    """Samples the RSS of some processes every ``interval`` seconds in a thread; keeps peaks."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]], interval: float = 0.2) -> None:
        self.groups = groups
        self.interval = interval
        self.peak: dict[str, float] = dict.fromkeys(groups, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pids in self.groups.items():
                try:
                    total = sum(rss_mb(p) for p in pids())
                except Exception:  # noqa: BLE001 - a process that just ended
                    continue
                self.peak[name] = max(self.peak[name], total)


# -- a runtime in its own process -------------------------------------------------------------------
_LAUNCH = r"""
import json, os, signal, sys, threading, time
from flame_local import LocalRuntime
settings, ready = json.loads(sys.argv[1]), sys.argv[2]
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
signal.signal(signal.SIGINT, lambda *_: done.set())
rt = LocalRuntime(**settings).start()
info = {"pid": os.getpid(), "endpoint": rt.endpoint, "cache_endpoint": rt.cache_endpoint,
        "home": str(rt.home), "socket_dir": str(rt._socket_dir)}
with open(ready + ".tmp", "w") as f:
    json.dump(info, f)
os.replace(ready + ".tmp", ready)
while not done.wait(0.2):
    pass
t = time.monotonic()
rt.stop()
print(json.dumps({"stop_seconds": round(time.monotonic() - t, 3)}), flush=True)
"""


@dataclass
class RuntimeChild:
    """``LocalRuntime(**settings)`` in a child process that dies with the test process."""

    settings: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    endpoint: str = ""
    cache_endpoint: str = ""
    home: Path = Path()
    socket_dir: Path = Path()
    proc: subprocess.Popen[str] | None = None
    _state: Path | None = None

    def start(self, timeout: float = 60.0) -> RuntimeChild:
        self._state = Path(tempfile.mkdtemp(prefix="fj-rel-rt-"))
        ready = self._state / "ready.json"
        argv = [PYTHON, "-c", _LAUNCH, json.dumps(self.settings), str(ready)]
        if _SETPRIV:
            argv = [_SETPRIV, "--pdeathsig", "TERM", "--", *argv]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        with open(self._state / "runtime.log", "w") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, timeout, "the runtime to start")
        if not ready.exists():
            raise RuntimeError(f"runtime did not start: {(self._state / 'runtime.log').read_text()[-2000:]}")
        info = json.loads(ready.read_text())
        self.pid = info["pid"]
        self.endpoint, self.cache_endpoint = info["endpoint"], info["cache_endpoint"]
        self.home, self.socket_dir = Path(info["home"]), Path(info["socket_dir"])
        return self

    def client_env(self) -> dict[str, str]:
        return {"FLAME_ENDPOINT": self.endpoint, "FLAME_CACHE_ENDPOINT": self.cache_endpoint}

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to end; its last JSON line (``stop_seconds``), if any."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=10)
        if self._state is not None:
            shutil.rmtree(self._state, ignore_errors=True)

    def __enter__(self) -> RuntimeChild:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def unix_socket_paths(pid: int) -> set[str]:
    """Paths of the Unix sockets ``pid`` holds (from /proc/net/unix)."""
    mine = socket_inodes(pid)
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[6]) in mine:
            paths.add(fields[7])
    return paths


def instance_sockets(runtime_pid: int) -> dict[int, str]:
    """The runtime's bound instances: child pid -> the Instance socket it listens on."""
    out = {}
    for pid in children(runtime_pid):
        for path in unix_socket_paths(pid):
            if path.endswith((".sock", ".sock.framed")) and "/flk-" in path:
                out[pid] = path
    return out


def instance_pids(runtime_pid: int) -> set[int]:
    return set(instance_sockets(runtime_pid))


# -- client scripts -----------------------------------------------------------------------------------
def client_env(runtime_env: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), **runtime_env, **extra)
    env.pop("FLAME_CACHE_STORAGE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def start_client(cwd: Path, env: dict[str, str], body: str, name: str = "client.py") -> subprocess.Popen[str]:
    """Start a Python script (``body``, dedented) as a real client process. Its stdin is a pipe:
    a script that waits on ``sys.stdin`` waits until the test writes to it or closes it (an
    inherited stdin may be closed or /dev/null, which would let it run on at once)."""
    script = cwd / name
    script.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [PYTHON, str(script)],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_client(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait for a client script; return the JSON it printed on its ``RESULT`` line."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"client did not finish within {timeout:g}s:\n{out[-2000:]}\n{err[-3000:]}"
        ) from None
    results = [line[len("RESULT ") :] for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, (
        f"client failed ({proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}"
    )
    return json.loads(results[-1])


def run_client(cwd: Path, env: dict[str, str], body: str, timeout: float = 120) -> dict[str, Any]:
    return finish_client(start_client(cwd, env, body), timeout)


def kval(kernel: Any, code: str, timeout: float = 60.0) -> Any:
    """Run the statements of ``code`` in a kernel, then return the JSON value of its last line."""
    *head, last = code.rstrip().split("\n")
    if any(line.strip() for line in head):
        kernel.run("\n".join(head), timeout=timeout)
    return kernel.value(last, timeout=timeout)
