"""Where the runtime keeps its instances' Unix sockets: out of temp cleaners' reach, and healed.

``/tmp`` is swept by ``systemd-tmpfiles`` and cron jobs; a socket folder removed under a long-lived
runtime made every new instance fail (``bind: FileNotFoundError``). So the folder goes, in order,
to ``$XDG_RUNTIME_DIR/flame-local`` (the per-user place for sockets, never aged out), then the
user's cache dir (``$XDG_CACHE_HOME`` or ``~/.cache``)``/flame-local``, and to ``/tmp`` only when
neither gives a path short enough for AF_UNIX (108 bytes with the NUL). :func:`ensure` recreates
it (private, ours) when it disappears anyway; every instance start calls it.

    folder = make_socket_dir()        # e.g. ~/.cache/flame-local/flk-x1y2z3ab
    ensure(folder)                    # False (and recreated) if a cleaner removed it
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "flk-"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes, NUL included
#: Room kept for a socket's name in the folder: ``exec-<n>.sock.framed`` with a long n.
NAME_ROOM = 32


def parents(env: dict[str, str] | None = None) -> list[Path]:
    """Candidate parent folders, best first (only those whose variables are set)."""
    env = dict(os.environ) if env is None else env
    out = []
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "flame-local")
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    out.append(cache / "flame-local")
    out.append(Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir()))
    return out


def fits(folder: Path) -> bool:
    """Is ``folder`` short enough for every socket the runtime puts in it?"""
    return len(os.fsencode(folder)) + 1 + NAME_ROOM <= MAX_SOCKET_PATH


def make_socket_dir(env: dict[str, str] | None = None) -> Path:
    """A new private folder ``flk-*`` in the first candidate parent that is usable and short enough."""
    last: OSError | None = None
    for parent in parents(env):
        if not fits(parent / f"{PREFIX}xxxxxxxx"):
            continue
        try:
            _private_dirs(parent)
            return Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        except OSError as e:  # not writable (a read-only home, a foreign XDG_RUNTIME_DIR): next one
            last = e
    raise OSError(f"no usable folder for the runtime's sockets: {last}")


def ensure(folder: Path) -> bool:
    """True if ``folder`` is there; else recreate it (0700) and return False. Raises OSError when
    something not ours (another user's, or not a private folder) took its place."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        _private_dirs(folder.parent)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        _check_ours(folder, st)
        log.warning("the instance socket folder %s was removed (a temp cleaner?): recreated it", folder)
        return False
    _check_ours(folder, st)
    return True


def _check_ours(folder: Path, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{folder} is not this user's private folder: not using it for sockets")


def _private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
