"""``%%flame --session NAME`` cells see the notebook (issue 19, point 1), in a real kernel.

Every cell sends the current values of the notebook globals it uses; names the session's own
cells assigned win over notebook globals of the same name.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel_helpers import KernelSession


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("ssn-home")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("ssn-cwd"), extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        k.run("import numpy as np")
        yield k


def ok(k: KernelSession, code: str, timeout: float = 180) -> str:
    r = k.execute(textwrap.dedent(code).strip("\n"), timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r.stdout


def test_train_then_evaluate_with_a_global_defined_between(kernel: KernelSession) -> None:
    ok(kernel, "X_train = np.arange(10.0)\ny_train = 2 * X_train + 1")
    ok(
        kernel,
        """
        %%flame --session ml
        slope, intercept = np.polyfit(X_train, y_train, 1)
        def predict(x):
            return slope * x + intercept
        """,
    )
    ok(kernel, "X_test = np.array([20.0, 30.0])\ny_test = 2 * X_test + 1")
    ok(
        kernel,
        """
        %%flame --session ml -o score
        score = float(np.abs(predict(X_test) - y_test).max())
        """,
    )
    assert kernel.value("score") < 1e-6


def test_a_changed_global_is_seen_by_the_next_session_cell(kernel: KernelSession) -> None:
    ok(kernel, "THRESH = 0.5")
    ok(kernel, "%%flame --session s\nseen1 = THRESH")
    ok(kernel, "THRESH = 0.9\nB = 2")
    ok(kernel, "%%flame --session s -o pair\npair = (seen1, THRESH)")
    assert kernel.value("pair") == [0.5, 0.9]
    ok(kernel, "%%flame --session s -o b\nb = B")
    assert kernel.value("b") == 2


def test_a_function_from_an_earlier_session_cell_sees_current_globals(kernel: KernelSession) -> None:
    ok(kernel, "RATE = 1")
    ok(kernel, "%%flame --session f\ndef rate():\n    return RATE")
    ok(kernel, "RATE = 5")
    ok(kernel, "%%flame --session f -o r\nr = (rate(), RATE)")
    assert kernel.value("r") == [5, 5]


def test_a_name_assigned_in_the_session_wins_over_the_notebook_global(kernel: KernelSession) -> None:
    ok(kernel, "model = 'notebook model'")
    ok(kernel, "%%flame --session m\nmodel = 'trained remotely'\nepochs = 3")
    ok(kernel, "epochs = 100")
    ok(kernel, "%%flame --session m -o seen\nseen = (model, epochs)")
    assert kernel.value("seen") == ["trained remotely", 3]
    assert kernel.value("model") == "notebook model"  # the notebook's own value is untouched
