"""A small PyTorch model trained in a ``%%flame --session`` across cells, in a real kernel (issue 19):
the training cell, then a global defined in the notebook, then a session cell that evaluates the
kept model with it; and a served ``nn.Module`` instance whose ``forward`` is a method.

torch is not in the test extra (PyPI's Linux wheel brings GBs of CUDA libraries and the CPU wheel
index is not reachable here): where torch is absent this module is skipped, saying so, and
notebooks/07-ml.ipynb trains a numpy network the same way.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "torch",
    reason="torch is not installed (not in the test extra: only a CPU wheel is cheap, from an index "
    "not reachable here); install a CPU torch into the venv to run these",
)

from tests.kernel_helpers import KernelSession  # noqa: E402 - after the skip

DATA = """
import torch

gen = torch.Generator().manual_seed(0)
W_TRUE = torch.tensor([1.5, -2.0, 0.5, 1.0])
X = torch.randn(256, 4, generator=gen)
y = (X @ W_TRUE > 0).float()
"""

TRAIN = """
%%flame --session torch_mlp
import os
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
for epoch in range(200):
    opt.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), y)
    loss.backward()
    opt.step()
trained_in = os.getpid()
round(float(loss), 4)
"""

EVALUATE = """
%%flame --session torch_mlp
import os
with torch.no_grad():
    accuracy = float(((model(X_test).squeeze(1) > 0).float() == y_test).float().mean())
(accuracy, trained_in == os.getpid())
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("torch-home")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("torch-cwd"), extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        ok(k, DATA)
        yield k


def ok(k: KernelSession, code: str, timeout: float = 180) -> str:
    r = k.execute(textwrap.dedent(code).strip(), timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r.stdout


def test_a_torch_model_trained_in_a_session_is_evaluated_by_a_later_cell(kernel: KernelSession) -> None:
    ok(kernel, TRAIN)
    loss = kernel.value("_.get(timeout=120)")
    assert loss < 0.3, loss
    ok(kernel, "X_test = torch.randn(128, 4, generator=gen)\ny_test = (X_test @ W_TRUE > 0).float()")
    ok(kernel, EVALUATE)
    accuracy, same_process = kernel.value("_.get(timeout=120)")
    assert accuracy > 0.85 and same_process is True, (accuracy, same_process)
    ok(kernel, "%flame_service --close-all")


def test_a_served_module_instance_exposes_forward(kernel: KernelSession) -> None:
    ok(
        kernel,
        "torch.manual_seed(0)\nnet = torch.nn.Linear(4, 1).requires_grad_(False)\n%flame_service net_s = net",
    )
    ok(kernel, "local = net(X[:3])")
    assert kernel.value("torch.allclose(net_s(X[:3]).get(timeout=120), local)") is True
    assert kernel.value("torch.allclose(net_s.forward(X[:3]).get(timeout=120), local)") is True
    ok(kernel, "%flame_service --close net_s")
