"""The object cache's storage folder on tmpfs (``/dev/shm``), as Ray keeps its object store there.

Large results reach the kernel as files of the cache's storage (``cache/storage.py``). On a
disk-backed ``/tmp`` a file that is kept pays for the page cache's writeback: writing 100 MB took
0.26 s on this machine's ext4, 0.03 s on tmpfs (an in-memory copy is 0.025 s). So the runtime puts
that folder in ``/dev/shm/flame-local-<uid>/fls-<pid>-*`` when ``/dev/shm`` is a writable tmpfs,
and in its home otherwise (``FLAME_LOCAL_CACHE_SHM=0`` too). The folder goes when the runtime
stops; one left by a runtime that was killed is removed by the next runtime of the same user
that starts (its pid is no longer alive).

    root = storage_dir(home / "storage")   # e.g. /dev/shm/flame-local-1000/fls-4242-x1y2z3
    ...
    remove(root)                           # at stop (only a folder this module made)
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from flame_local.process import pid_alive

log = logging.getLogger(__name__)

SHM = Path("/dev/shm")
PREFIX = "fls-"
_TMPFS_MAGIC = "tmpfs"


def parent(shm: Path = SHM) -> Path:
    """This user's folder of storage folders under ``shm``."""
    return shm / f"flame-local-{os.getuid()}"


def _is_tmpfs(path: Path) -> bool:
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[:3] for line in f]
    except OSError:
        return False
    best = ""
    kind = ""
    target = str(path.resolve())
    for fields in mounts:
        if len(fields) == 3 and (target == fields[1] or target.startswith(fields[1].rstrip("/") + "/")):
            if len(fields[1]) >= len(best):
                best, kind = fields[1], fields[2]
    return kind == _TMPFS_MAGIC


def _own_private(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def storage_dir(fallback: Path, shm: Path = SHM) -> Path:
    """A new private storage folder on tmpfs, or ``fallback`` (created) when there is none to use."""
    if os.environ.get("FLAME_LOCAL_CACHE_SHM", "1") != "0" and shm.is_dir() and _is_tmpfs(shm):
        top = parent(shm)
        try:
            top.mkdir(mode=0o700, exist_ok=True)
            if _own_private(top):
                sweep(top)
                return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=top))
            log.warning("%s is not this user's private folder: cache storage stays in the home", top)
        except OSError as e:  # full, read-only, not ours: the home is as good, only slower
            log.warning("no cache storage folder in %s (%s): it stays in the home", shm, e)
    fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    return fallback


def sweep(top: Path) -> list[Path]:
    """Remove the storage folders in ``top`` whose runtime (the pid in the name) has died."""
    removed = []
    for entry in top.glob(f"{PREFIX}*"):
        pid_text = entry.name[len(PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        try:
            if _own_private(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        except OSError:
            continue
    return removed


def remove(path: Path, shm: Path = SHM) -> None:
    """Remove a folder :func:`storage_dir` made on tmpfs (a fallback in the home goes with it)."""
    if path.parent == parent(shm) and path.name.startswith(PREFIX):
        shutil.rmtree(path, ignore_errors=True)
