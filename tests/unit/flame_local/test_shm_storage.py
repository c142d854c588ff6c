"""The cache's storage folder on tmpfs: made private, removed at stop, swept when its runtime died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flame_local import shm_storage


def test_a_folder_in_the_users_private_parent_on_tmpfs_or_the_home(tmp_path: Path) -> None:
    made = shm_storage.storage_dir(tmp_path / "home" / "storage")
    try:
        if shm_storage._is_tmpfs(shm_storage.SHM):
            assert made.parent == shm_storage.parent() and made.name.startswith(f"fls-{os.getpid()}-")
            assert (os.stat(made).st_mode & 0o777, os.stat(made.parent).st_mode & 0o777) == (0o700, 0o700)
        else:
            assert made == tmp_path / "home" / "storage" and made.is_dir()
    finally:
        shm_storage.remove(made)
    assert not made.exists() or made == tmp_path / "home" / "storage"


def test_turned_off_it_stays_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAME_LOCAL_CACHE_SHM", "0")
    assert shm_storage.storage_dir(tmp_path / "storage") == tmp_path / "storage"


def test_a_tmpfs_that_is_not_one_is_not_used(tmp_path: Path) -> None:
    fake_shm = tmp_path / "shm"  # a plain folder of the test's disk
    fake_shm.mkdir()
    assert shm_storage.storage_dir(tmp_path / "storage", shm=fake_shm) == tmp_path / "storage"


def test_sweep_removes_only_folders_of_dead_runtimes(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # exited: its pid is (almost surely) not reused this instant
    top = tmp_path / "top"
    top.mkdir(mode=0o700)
    gone = top / f"fls-{dead_pid}-abc"
    live = top / f"fls-{os.getpid()}-def"
    other = top / "something-else"
    for d in (gone, live, other):
        d.mkdir(mode=0o700)
        (d / "x.arrow").write_bytes(b"data")
    assert shm_storage.sweep(top) == [gone]
    assert not gone.exists() and live.exists() and other.exists()


def test_remove_touches_only_its_own_folders(tmp_path: Path) -> None:
    home_storage = tmp_path / "storage"
    home_storage.mkdir()
    shm_storage.remove(home_storage)  # a fallback in the home is the runtime's home's business
    assert home_storage.exists()
