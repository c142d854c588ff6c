"""The files of the background runtime (``flame-local start``): ``~/.flame/local/runtime.json``,
the start lock, the ``~/.flame/flame.yaml`` it writes, and the sweep of what a runtime that died
without cleaning up (SIGKILL) left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat as stat_mod
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from flame_local import socket_dirs

STATE_FILE = Path.home() / ".flame" / "local" / "runtime.json"
START_LOCK = STATE_FILE.with_name("start.lock")
FLAME_YAML = Path.home() / ".flame" / "flame.yaml"
MARKER = "# written by flame-local; it is removed by `flame-local stop`"


# -- flame.yaml ----------------------------------------------------------------------------------
def write_flame_yaml(endpoint: str, cache_endpoint: str) -> str:
    """Write ~/.flame/flame.yaml for this runtime unless the user has their own there."""
    if FLAME_YAML.exists() and MARKER not in FLAME_YAML.read_text(errors="replace"):
        return (
            f"{FLAME_YAML} exists and is yours, so it was left alone; point flamepy at the runtime with\n"
            f'  eval "$(flame-local env)"'
        )
    _private_dirs(FLAME_YAML.parent)
    text = (
        f"{MARKER}\n"
        "current-context: flame-local\n"
        "contexts:\n"
        "  - name: flame-local\n"
        "    cluster:\n"
        f'      endpoint: "{endpoint}"\n'
        "    cache:\n"
        f'      endpoint: "{cache_endpoint}"\n'
    )
    fd = os.open(FLAME_YAML, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return f"wrote {FLAME_YAML} (context flame-local)"


def remove_own_flame_yaml(endpoint: str | None = None) -> None:
    """Remove flame.yaml if flame-local wrote it (and, given ``endpoint``, for that runtime)."""
    if not FLAME_YAML.exists():
        return
    text = FLAME_YAML.read_text(errors="replace")
    if MARKER in text and (endpoint is None or f'endpoint: "{endpoint}"' in text):
        FLAME_YAML.unlink()


# -- state ---------------------------------------------------------------------------------------
def _raw_state() -> dict | None:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _live(state: dict) -> bool:
    from flame_local.process import pid_alive

    try:
        pid = int(state.get("pid", 0))
    except (TypeError, ValueError):
        return False
    return pid > 0 and pid_alive(pid) and _is_runtime(pid)


def read_state() -> dict | None:
    """The recorded runtime, if it is alive (its PID runs flame_local as this user)."""
    state = _raw_state()
    return state if state is not None and _live(state) else None


def _is_runtime(pid: int) -> bool:
    try:
        ours = os.stat(f"/proc/{pid}").st_uid == os.getuid()
        return ours and b"flame_local" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def sweep_stale() -> str | None:
    """Remove what a runtime that died without cleaning up (SIGKILL) left: its home (only a
    temporary one it created), socket dir, ready dir, runtime.json and the flame.yaml it wrote.
    Only directories of the recorded paths, with flame-local's name prefixes, in the temp dir,
    owned by this user, are removed. Returns what to tell the user, None if nothing was stale."""
    state = _raw_state()
    if state is None or _live(state):
        return None
    if state.get("temp_home"):
        _remove_own_dir(state.get("home"), "flame-local-")
    _remove_own_dir(state.get("socket_dir"), "flk-")
    if state.get("log"):
        _remove_own_dir(str(Path(str(state["log"])).parent), "flame-local-ready-")
    STATE_FILE.unlink(missing_ok=True)
    remove_own_flame_yaml(state.get("endpoint"))
    return f"removed what the stopped runtime (pid {state.get('pid')}) left behind"


def _remove_own_dir(path: object, prefix: str) -> None:
    if not isinstance(path, str) or not path:
        return
    p = Path(path)
    try:
        st = os.lstat(p)
    except OSError:
        return
    tmp = {Path(tempfile.gettempdir()).resolve(), Path("/tmp")}
    if prefix == socket_dirs.PREFIX:  # sockets may also live in the user's runtime or cache dir
        tmp.update(d.resolve() for d in socket_dirs.parents())
    if (
        stat_mod.S_ISDIR(st.st_mode)
        and st.st_uid == os.getuid()
        and p.name.startswith(prefix)
        and p.parent.resolve() in tmp
    ):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def start_lock(timeout: float = 120.0) -> Iterator[bool]:
    """Hold an exclusive flock on ~/.flame/local/start.lock (one `start` at a time); False if
    another start held it for longer than ``timeout``."""
    _private_dirs(START_LOCK.parent)
    fd = os.open(START_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)  # releases the lock


def _private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700 (``mkdir(parents=True)`` gives the parents
    the umask's mode, e.g. a world-readable ~/.flame)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


def write_json(path: Path, data: dict) -> None:
    _private_dirs(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
