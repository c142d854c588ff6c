"""Child processes that die with the runtime, and take every descendant with them.

* Linux's parent-death signal: an instance dies with the runtime, even when it is SIGKILLed.
* ``PR_SET_CHILD_SUBREAPER``: an instance adopts what its tasks orphan (a ``setsid`` child, a
  double fork), so those stay below it and :func:`end_family` can end them with it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import time
from pathlib import Path

__all__ = ["end_family", "family", "orphan_guard", "signal_family"]

_PR_SET_PDEATHSIG = 1
_SETPRIV = shutil.which("setpriv")
# Become a subreaper (prctl 36), then exec the instance's command: the attribute survives exec.
_SUBREAPER = "import ctypes,os,sys;ctypes.CDLL(None).prctl(36,1,0,0,0);os.execvp(sys.argv[1],sys.argv[1:])"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort; stop() still ends the group
        pass


def orphan_guard(argv: list[str]) -> tuple[list[str], object]:
    """Make the instance die with the runtime (even on SIGKILL) and a subreaper of its descendants.

    util-linux ``setpriv --pdeathsig`` sets the parent-death signal without a ``preexec_fn``, which
    keeps subprocess on its fast vfork path and off gRPC's fork handlers (``prctl`` in a
    ``preexec_fn`` is the fallback); a ``python -S`` shim sets the subreaper flag, then execs.
    """
    if not sys.platform.startswith("linux"):
        return argv, None
    argv = [sys.executable, "-S", "-c", _SUBREAPER, *argv]
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], None
    return argv, _die_with_parent


Member = tuple[int, str]  # (pid, start time): a pid reused by another process does not match


def _start_time(pid: int) -> str | None:
    """The start time of a live ``pid`` (None once it is gone or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def family(pids: set[int]) -> set[Member]:
    """Every live process below any of ``pids`` (one scan of /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] not in ("Z", "X"):
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: set[int] = set()
    todo = list(pids)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return {(pid, start) for pid in out if (start := _start_time(pid)) is not None}


def signal_family(members: set[Member], sig: signal.Signals) -> None:
    for pid, start in members:
        if _start_time(pid) == start:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def end_family(root: int, known: set[Member] | None = None, rounds: int = 5) -> None:
    """SIGKILL every descendant of ``root`` (and of the ``known`` ones, which an exited root no
    longer adopts), again until none is left or ``rounds`` scans are done."""
    known = known or set()
    seeds = {root} | {pid for pid, _ in known}
    members = set(known)
    for _ in range(rounds):
        members |= family(seeds)
        live = {m for m in members if _start_time(m[0]) == m[1]}
        if not live:
            return
        signal_family(live, signal.SIGKILL)
        seeds |= {pid for pid, _ in live}
        members = set()
        time.sleep(0.01)
