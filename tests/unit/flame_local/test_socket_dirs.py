"""Where the runtime's socket folder goes (flame_local.socket_dirs), with real folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flame_local import socket_dirs


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (pytest's tmp_path can exceed what AF_UNIX allows)."""
    d = Path(tempfile.mkdtemp(prefix="fsd-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_runtime_dir_first_then_cache_dir_then_tmp(short_dir: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(short_dir / "run"), "XDG_CACHE_HOME": str(short_dir / "cache")}
    assert socket_dirs.parents(env) == [
        short_dir / "run" / "flame-local",
        short_dir / "cache" / "flame-local",
        Path("/tmp"),
    ]
    (short_dir / "run").mkdir(mode=0o700)
    made = socket_dirs.make_socket_dir(env)
    assert made.parent == short_dir / "run" / "flame-local" and made.name.startswith("flk-")
    assert made.stat().st_mode & 0o777 == 0o700 and made.parent.stat().st_mode & 0o777 == 0o700
    made = socket_dirs.make_socket_dir({"XDG_CACHE_HOME": str(short_dir / "cache")})
    assert made.parent == short_dir / "cache" / "flame-local"


def test_a_cache_dir_too_long_for_af_unix_falls_back_to_tmp(short_dir: Path) -> None:
    deep = short_dir / ("d" * 90)
    made = socket_dirs.make_socket_dir({"XDG_CACHE_HOME": str(deep)})
    try:
        assert made.parent == Path("/tmp") and not deep.exists()
        assert len(str(made / "exec-123456789.sock.framed")) < 108
    finally:
        made.rmdir()


def test_ensure_recreates_a_removed_folder_and_refuses_a_foreign_one(short_dir: Path) -> None:
    folder = socket_dirs.make_socket_dir({"XDG_CACHE_HOME": str(short_dir)})
    assert socket_dirs.ensure(folder) is True
    shutil.rmtree(short_dir / "flame-local")  # the folder and its parent, as a cleaner would
    assert socket_dirs.ensure(folder) is False
    assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
    os.chmod(folder, 0o777)  # not private any more: someone else's now, as far as we know
    with pytest.raises(OSError, match="not this user's private folder"):
        socket_dirs.ensure(folder)
