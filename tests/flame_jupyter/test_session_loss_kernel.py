"""A ``%%flame --session`` whose instance ends: its loss is told once, never silently (real kernel).

The session's namespace lives only in its instance process. When that process is killed, the cell
running there fails with the runtime's error; the next cell is refused by the new instance with
``this session's state was lost because ...`` (it would otherwise run in an empty namespace); the
cells after that run in the new namespace.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.kernel_helpers import KernelSession


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    from flame_local import LocalRuntime

    home = tmp_path_factory.mktemp("khome")
    with LocalRuntime(max_instances=2, shutdown_grace=2.0) as rt:
        env = {"HOME": str(home), **rt.client_env()}
        with KernelSession(cwd=tmp_path_factory.mktemp("kcwd"), extra_env=env) as k:
            r = k.run("%load_ext flame_jupyter")
            assert r.stdout.startswith("flame_jupyter: Flame cluster at http://127.0.0.1:"), r.stdout
            yield k


def test_a_killed_session_instance_is_told_once_then_the_session_starts_afresh(kernel: KernelSession) -> None:
    r = kernel.execute("%%flame --session kept\nimport os\nmodel = {'w': 41}\nos.getpid()", timeout=120)
    assert r.status == "ok", r.error_text() + r.stderr
    pid = kernel.value("_.get()")
    r = kernel.execute("%%flame --session kept\nmodel['w'] + 1", timeout=120)
    assert r.status == "ok" and kernel.value("_.get()") == 42, r.error_text()
    os.kill(pid, signal.SIGKILL)  # the process that holds the session's namespace ends
    seen = []
    for _ in range(3):  # bounded: the runtime's error, the loss, then the new namespace
        r = kernel.execute("%%flame --session kept\n'model' in globals()", timeout=120)
        seen.append(kernel.value("_.get()") if r.status == "ok" else r.error_text())
    lost = [s for s in seen if isinstance(s, str) and "this session's state was lost because" in s]
    assert len(lost) == 1, seen
    assert "session 'kept'" in lost[0] and "at least 2 earlier call(s)" in lost[0], lost[0]
    assert seen[-1] is False  # the new namespace: empty, and said so once before
