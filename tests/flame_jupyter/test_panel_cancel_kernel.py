"""The status panel after a cancel, in a real kernel: its "on Flame" line agrees with its columns.

Three calls of a slow service are cancelled (one running, two queued). The row's columns count
them as cancelled; Flame counts tasks, and a cancelled call's task ends as an ordinary task on
Flame v0.6.0 (the call stops itself; Flame has no cancel-one-task RPC). The line must not say
"3 ok" next to a "done 0" column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel_helpers import KernelSession
from tests.polling import wait_for

SLOW = "import time\ndef slow():\n    for _ in range(600):\n        time.sleep(0.05)\n    return 1\n"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    env = {"HOME": str(tmp_path_factory.mktemp("khome")), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("kcwd"), extra_env=env) as k:
        assert k.run("%load_ext flame_jupyter").status == "ok"
        k.run("from flame_jupyter.status_panel import status")
        yield k


def _row(k: KernelSession) -> dict:
    return k.value("[r for r in status()['services'] if r['name'] == 'slow_svc'][0]")


def test_on_flame_line_agrees_with_the_columns_after_a_cancel(kernel: KernelSession, tmp_path: Path) -> None:
    kernel.run(SLOW + "%flame_service --no-autoscale slow_svc = slow\nfs = [slow_svc() for _ in range(3)]")
    wait_for(lambda: kernel.value("fs[0].state") == "running", 60, "the first call to run")
    kernel.run("for f in fs:\n    f.cancel()")
    wait_for(lambda: kernel.value("all(f.done() for f in fs)"), 60, "the cancels")
    assert kernel.value("[f.state for f in fs]") == ["cancelled"] * 3
    # Flame's view settles once the executor has dropped the cancelled tasks
    row = wait_for(
        lambda: (r := _row(kernel))["flame"] and "0 pending · 0 running" in r["flame"] and r,
        60,
        "Flame to settle",
    )
    counts, line = row["counts"], row["flame"]
    assert counts["cancelled"] == 3 and counts["done"] == 0, row
    said = {name: int(n) for n, name in re.findall(r"(\d+) (ok|done|succeeded|failed|cancelled)", line)}
    assert said.get("ok", 0) == said.get("done", 0) == said.get("succeeded", 0) == 0 or counts["done"], line
    assert said.get("failed", 0) == counts["failed"], line
    assert "3 cancelled" in line, line
