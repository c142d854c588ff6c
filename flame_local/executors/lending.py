"""Slot lending: which instances wait on other tasks, and the run permits of the slots.

An instance whose running task waits on other tasks gives its slot back while it waits (as Ray
releases a blocked worker's CPU), so nested and recursive work never deadlocks on the slot limit.
Waiting is seen from the outside, with no new RPC: a ``WatchTask`` stream opened by an instance's
process (or a descendant of it) while the instance runs a task means that task waits.  The
stream's TCP peer is found with ``NETLINK_SOCK_DIAG`` (its socket inode), the inode in the
``/proc/<pid>/fd`` of the instances and their descendants; the answer is cached per socket inode
(one connection), so a client's many watches cost one scan.

:class:`SlotBook` holds the permits: an instance starts a task only while fewer than
``capacity`` instances run tasks that do not wait, so busy instances stay within the slots (a
waiter that resumes may exceed them until one of them finishes, as in Ray).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flame_local.executors.orphans import family
from flame_local.servers.peers import diag_socket, parse_peer, socket_pid

__all__ = ["PeerInstances", "SlotBook", "Wait"]

_CACHE = 4096  # socket inodes remembered


@dataclass(frozen=True)
class Wait:
    """One open watch of an instance: made while it ran ``task_id``, on ``session_id``'s task."""

    instance_id: str
    task_id: int | None
    session_id: str


class SlotBook:
    """Run permits (at most ``capacity`` instances run a task that does not wait) and open waits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._running: dict[str, int | None] = {}  # instance id -> its task (permit holders)
        self._waits: dict[int, Wait] = {}
        self._ids = itertools.count(1)

    def try_start(self, instance_id: str) -> bool:
        """Take a permit for ``instance_id`` if a slot is free."""
        with self._lock:
            if instance_id in self._running:
                return True
            if self._busy() >= self.capacity:
                return False
            self._running[instance_id] = None
            return True

    def running(self, instance_id: str, task_id: int) -> None:
        with self._lock:
            self._running[instance_id] = task_id

    def finished(self, instance_id: str) -> None:
        with self._lock:
            self._running.pop(instance_id, None)

    def open_wait(self, wait: Wait) -> int:
        with self._lock:
            token = next(self._ids)
            self._waits[token] = wait
            return token

    def close_wait(self, token: int) -> None:
        with self._lock:
            self._waits.pop(token, None)

    def waiting(self) -> set[str]:
        """Instances whose current task waits (a watch opened during that very task is open)."""
        with self._lock:
            return self._waiting()

    def awaited(self) -> set[str]:
        """Sessions whose tasks a waiting instance watches."""
        with self._lock:
            waiting = self._waiting()
            return {w.session_id for w in self._waits.values() if w.instance_id in waiting}

    def busy(self) -> int:
        with self._lock:
            return self._busy()

    def _waiting(self) -> set[str]:
        return {
            w.instance_id
            for w in self._waits.values()
            if w.instance_id in self._running and self._running[w.instance_id] == w.task_id
        }

    def _busy(self) -> int:
        return len(self._running.keys() - self._waiting())


class PeerInstances:
    """Which instance process (if any) holds the client socket of a frontend connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, tuple[int, str] | None] = OrderedDict()  # inode -> (root, start)

    def root_of(self, peer: str, server: tuple[str, int], roots: Iterable[int]) -> int | None:
        """The pid among ``roots`` whose process or a descendant of it holds ``peer``'s socket."""
        parsed = parse_peer(peer)
        if parsed is None:
            return None
        found = diag_socket(parsed[1], parsed[2], *server)
        if found is None:
            return None
        inode = found[1]
        roots = set(roots)
        with self._lock:
            if inode in self._cache:
                self._cache.move_to_end(inode)
                hit = self._cache[inode]
                if hit is None:
                    return None
                if hit[0] in roots and _start_time(hit[0]) == hit[1]:
                    return hit[0]
        root = self._scan(inode, roots)
        entry = None if root is None else (root, _start_time(root) or "")
        with self._lock:
            self._cache[inode] = entry
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return root

    @staticmethod
    def _scan(inode: int, roots: set[int]) -> int | None:
        below = {pid for pid, _ in family(roots)}
        pid = socket_pid(inode, [*roots, *below])
        seen = 0
        while pid is not None and pid not in roots and pid > 1 and seen < 64:
            pid = _ppid(pid)
            seen += 1
        return pid if pid in roots else None


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _ppid(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None
