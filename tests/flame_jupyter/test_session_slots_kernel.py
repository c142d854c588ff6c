"""A ``%%flame --session`` keeps its state while other services run, on a 2-slot runtime (real kernel).

Two open sessions hold both slots' worth of idle instances; calls to a function service and plain
``%%flame`` cells run beside them (docs/runtime.md, "Slots"), and the sessions' next cells still
see what their earlier cells left, in the same process.
"""

from __future__ import annotations

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


def ok(k: KernelSession, code: str, timeout: float = 120):  # noqa: ANN201 - an ExecResult
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r


def test_session_state_survives_other_services_calls_on_two_slots(kernel: KernelSession) -> None:
    ok(kernel, "%%flame --session trained\nimport os\nmodel = {'w': 41}\nborn = os.getpid()")
    ok(kernel, "%%flame --session other\nimport os\nseen = [1]\nborn = os.getpid()")
    ok(kernel, "def square(x):\n    return x * x")
    ok(kernel, "%flame_service sq = square")
    assert kernel.value("[sq(i).get() for i in range(5)]") == [0, 1, 4, 9, 16]
    ok(kernel, "%%flame\nsum(range(10))")
    assert kernel.value("_.get()") == 45
    assert kernel.value("sq(9).get()") == 81
    ok(kernel, "%%flame --session trained\nimport os\n(model['w'] + 1, born == os.getpid())")
    assert kernel.value("_.get()") == [42, True]
    ok(kernel, "%%flame --session other\nimport os\n(len(seen), born == os.getpid())")
    assert kernel.value("_.get()") == [1, True]
