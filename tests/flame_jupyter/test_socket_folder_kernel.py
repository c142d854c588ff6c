"""The embedded runtime survives a temp cleaner: its socket folder removed under a live kernel.

A kernel starts its own embedded runtime (no ``FLAME_ENDPOINT``), serves a function, then the
folder holding the instances' Unix sockets is deleted, as ``systemd-tmpfiles`` or a cron job does
to old entries of ``/tmp``. ``%flame`` status must say so, a new service must still start (before:
``shim creation failed ... FileNotFoundError`` for every new service while status said healthy),
and the folder must live where such cleaners do not reach.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.kernel_helpers import KernelSession

SQ = "import flame_jupyter.connection\ndef sq(x):\n    return x * x\n"


def _ok(k: KernelSession, code: str, timeout: float = 120):
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r


def test_removed_socket_folder_is_reported_and_recreated(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="fjh-", dir="/tmp"))  # short: AF_UNIX paths are <= 107 bytes
    env = {"HOME": str(home), "FLAME_ENDPOINT": "", "FLAME_CACHE_ENDPOINT": "", "XDG_RUNTIME_DIR": ""}
    try:
        with KernelSession(cwd=tmp_path, extra_env=env) as k:
            _ok(k, "%load_ext flame_jupyter")
            _ok(k, SQ + "%flame_service sq1 = sq")
            assert k.value("sq1(3).get(timeout=60)") == 9
            folder = Path(k.value("str(flame_jupyter.connection.current().runtime.socket_dir)"))
            assert folder.is_dir(), folder
            healthy = _ok(k, "%flame").stdout
            assert f"instance sockets: {folder} (ok)" in healthy, healthy

            shutil.rmtree(folder)  # the temp cleaner

            status = _ok(k, "%flame").stdout
            assert f"instance sockets: {folder} is missing" in status, status
            _ok(k, "%flame_service sq2 = sq")
            assert k.value("sq2(4).get(timeout=60)") == 16  # a new instance, a new socket
            assert k.value("sq1(5).get(timeout=60)") == 25  # the old one still serves
            assert folder.is_dir()
            again = _ok(k, "%flame").stdout
            assert f"instance sockets: {folder} (ok)" in again, again

            # where cleaners of /tmp do not look: the user's cache dir
            assert folder.parent == home / ".cache" / "flame-local", folder
    finally:
        shutil.rmtree(home, ignore_errors=True)
