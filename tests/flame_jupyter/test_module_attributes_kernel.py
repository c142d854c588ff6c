"""A local module's attributes changed in the notebook travel with the call, as globals do.

``helpers.py`` sits next to the notebook and travels as source, so the executor imports it fresh:
without this, ``helpers.RATE = 0.25`` in the notebook changed nothing remotely. The rule: a
top-level constant of a shipped local module (``NAME = <literal>`` in its source) that the
notebook rebound, and a module attribute the notebook set to its own function or class, are sent
with each call and set on the executor's module; reverted, the source's value is back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kernel_helpers import KernelSession

HELPERS = """
RATE = 0.1
NAME = "base"
LIMITS = (1, 2)


def price(x):
    return round(x * (1 + RATE), 6)


def label():
    return NAME
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    cwd = tmp_path_factory.mktemp("kcwd")
    (cwd / "helpers.py").write_text(HELPERS)
    env = {"HOME": str(tmp_path_factory.mktemp("khome")), **runtime.client_env()}
    with KernelSession(cwd=cwd, extra_env=env) as k:
        assert k.run("%load_ext flame_jupyter").status == "ok"
        k.run(
            "import helpers\ndef cost(x):\n    return helpers.price(x), helpers.RATE, helpers.label(), helpers.LIMITS"
        )
        k.run("%flame_service costs = cost")
        yield k


def _cost(k: KernelSession) -> list:
    return k.value("costs(100).get(timeout=60)")


def test_a_changed_module_constant_travels_and_a_revert_restores_it(kernel: KernelSession) -> None:
    assert _cost(kernel) == [110.0, 0.1, "base", [1, 2]]
    kernel.run("helpers.RATE = 0.25\nhelpers.LIMITS = (5, 6)")
    assert _cost(kernel) == [125.0, 0.25, "base", [5, 6]]  # the module's own function sees it too
    kernel.run("helpers.RATE = 0.1\nhelpers.LIMITS = (1, 2)")
    assert _cost(kernel) == [110.0, 0.1, "base", [1, 2]]  # the executor's module is restored


def test_a_notebook_function_set_on_the_module_travels(kernel: KernelSession) -> None:
    kernel.run("SUFFIX = '!'\ndef shout():\n    return 'patched' + SUFFIX\nhelpers.label = shout")
    try:
        assert _cost(kernel)[2] == "patched!"
    finally:
        kernel.run("import importlib\nhelpers.label = importlib.reload(helpers).label")
    assert _cost(kernel)[2] == "base"


def test_cells_see_the_changed_constant(kernel: KernelSession) -> None:
    kernel.run("helpers.NAME = 'cells'")
    try:
        r = kernel.execute("%%flame\nhelpers.label(), helpers.price(10)", timeout=120)
        assert r.status == "ok", r.error_text()
        assert kernel.value("_.get(timeout=60)") == ["cells", 11.0]
    finally:
        kernel.run("helpers.NAME = 'base'")
