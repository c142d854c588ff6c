"""Redefining a served function or class in the notebook: the next call says the service still
runs the old definition (once per service), in a real kernel against the runtime."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.kernel_helpers import ExecResult, KernelSession


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    env = {"HOME": str(tmp_path_factory.mktemp("khome")), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("kcwd"), extra_env=env) as k:
        assert k.run("%load_ext flame_jupyter").status == "ok"
        yield k


def _cell(k: KernelSession, code: str) -> tuple[ExecResult, int]:
    """Run one cell; its result and its ``In[N]``."""
    r = k.run(code, timeout=120)
    counts = [m["content"]["execution_count"] for m in r.messages if m["msg_type"] == "execute_input"]
    return r, counts[0]


def test_redefined_function_warns_once_at_the_call(kernel: KernelSession) -> None:
    _, first = _cell(kernel, "def bump(x):\n    return x + 1")
    _cell(kernel, "%flame_service bumper = bump")
    r, _ = _cell(kernel, "bumper(1).get()")
    assert r.text == "2" and "FlameJupyterWarning" not in r.stderr, r.stderr
    _, second = _cell(kernel, "def bump(x):\n    return x + 100")
    r, _ = _cell(kernel, "bumper(1).get()")
    assert r.text == "2"  # still the served definition
    warning = re.sub(r"\s+", " ", r.stderr)
    assert f"FlameJupyterWarning: bumper serves the definition of bump from In[{first}]" in warning, r.stderr
    assert f"redefined bump in In[{second}]" in warning and "Re-run %flame_service" in warning, r.stderr
    assert "runner.py" not in r.stderr and "capturer.py" not in r.stderr  # points at the cell
    r, _ = _cell(kernel, "bumper(2).get()")
    assert r.text == "3" and "FlameJupyterWarning" not in r.stderr, r.stderr  # once per service
    _cell(kernel, "%flame_service bumper = bump")
    r, _ = _cell(kernel, "bumper(1).get()")
    assert r.text == "101" and "FlameJupyterWarning" not in r.stderr, r.stderr


def test_redefined_class_of_an_instance_service_warns(kernel: KernelSession) -> None:
    _, first = _cell(
        kernel,
        "class Scale:\n    def __init__(self, k):\n        self.k = k\n    def of(self, x):\n        return self.k * x",
    )
    _cell(kernel, "%flame_service scale = Scale(3)")
    _cell(
        kernel,
        "class Scale:\n    def __init__(self, k):\n        self.k = k\n    def of(self, x):\n        return -x",
    )
    r, _ = _cell(kernel, "scale.of(2).get()")
    assert r.text == "6"
    assert f"scale serves the definition of Scale from In[{first}]" in re.sub(r"\s+", " ", r.stderr), r.stderr


def test_rebinding_the_name_to_something_else_is_not_a_redefinition(kernel: KernelSession) -> None:
    _cell(kernel, "def tag(x):\n    return f'<{x}>'")
    _cell(kernel, "%flame_service tagger = tag\ntag = 'a string now'")
    r, _ = _cell(kernel, "tagger('a').get()")
    assert r.text == "'<a>'" and "FlameJupyterWarning" not in r.stderr, r.stderr
