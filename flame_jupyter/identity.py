"""Who opened a session: the kernel's host, pid and process start time, carried in its id.

Flame v0.6.0 keeps no client lease and its ``SessionAttributes`` have no labels, so the id is
the one place a session can say whose it is. Every session a :class:`~flame_jupyter.Runner`
opens is named ``<app>-fjk-<host><hash>-<pid>-<start>-<runner>-<n>``: ``host`` is the host
name's first label (letters and digits), ``hash`` 4 hex digits of the full host name, ``start``
the process start time (base 36, clock ticks since boot on Linux), ``runner`` the Runner's
own 4 characters and ``n`` the service's. On that host, a session whose process is gone (or
whose pid now belongs to another process) was left by a dead kernel.

>>> k = KernelId("node1", "ab12", 4242, "1z")
>>> parse(f"my-app-{k.token}-r000-s001") == (k, f"{k.token}-r000")
True
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import string
from dataclasses import dataclass

_ALPHABET = string.ascii_lowercase + string.digits
_ID = re.compile(
    r"-fjk-(?P<host>[a-z0-9]*)(?P<hash>[0-9a-f]{4})-(?P<pid>\d+)-(?P<start>[0-9a-z]+)"
    r"-(?P<runner>[0-9a-z]{4})-[0-9a-z]{4}$"
)


@dataclass(frozen=True)
class KernelId:
    """A process on a host, told apart from a later process with the same pid."""

    host: str
    host_hash: str
    pid: int
    start: str

    @property
    def token(self) -> str:
        return f"fjk-{self.host}{self.host_hash}-{self.pid}-{self.start}"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host or '?'}"


def _host() -> tuple[str, str]:
    name = socket.gethostname() or "localhost"
    label = re.sub(r"[^a-z0-9]", "", name.split(".")[0].lower())[:16]
    return label, hashlib.sha256(name.encode()).hexdigest()[:4]


def start_time(pid: int) -> str | None:
    """The process's start time (base 36), or None if there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    fields = stat.rpartition(b")")[2].split()
    return _b36(int(fields[19])) if len(fields) > 19 else "?"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


_cached: tuple[int, KernelId] | None = None


def this_kernel() -> KernelId:
    """This process's identity (recomputed in a forked child)."""
    global _cached
    pid = os.getpid()
    if _cached is None or _cached[0] != pid:
        host, digest = _host()
        start = start_time(pid)
        _cached = (pid, KernelId(host, digest, pid, start if start not in (None, "?") else "0"))
    return _cached[1]


def new_runner_key() -> str:
    """A Runner's own name part: ``<kernel token>-<4 characters>``."""
    return f"{this_kernel().token}-{_rand()}"


def new_session_id(app: str, runner_key: str) -> str:
    """A session id for a service of the Runner ``runner_key`` in application ``app``."""
    return f"{app}-{runner_key}-{_rand()}"


def _rand() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(4))


def parse(session_id: str) -> tuple[KernelId, str] | None:
    """(kernel, runner key) of a session flame_jupyter opened, else None."""
    m = _ID.search(session_id)
    if m is None:
        return None
    k = KernelId(m["host"], m["hash"], int(m["pid"]), m["start"])
    return k, f"{k.token}-{m['runner']}"


def on_this_host(k: KernelId) -> bool:
    return (k.host, k.host_hash) == _host()


def is_dead(k: KernelId) -> bool:
    """True only when ``k`` ran on this host and its process is gone (or its pid was reused)."""
    if not on_this_host(k) or k == this_kernel():
        return False
    start = start_time(k.pid)
    if start is None:  # no /proc entry: gone (where there is no /proc at all, ask kill(0))
        return True if os.path.isdir("/proc") else not _pid_alive(k.pid)
    if start == "?" or k.start == "0":
        return False
    return start != k.start


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
