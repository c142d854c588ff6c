"""Arguments in a real kernel (issues 16 and 19): large values of any type, notebook functions
inside arguments with their globals, process pools of notebook functions inside a task, and the
smaller points (generator results, methods of callable instances, close messages, the panel)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel_helpers import KernelSession

SETUP = r'''
import functools, types
import numpy as np
import pandas as pd
import flame_jupyter as fj

SCALE = 3.0


def echo(x=None, **kwargs):
    return (x, kwargs) if kwargs else x


def apply(fn, value):
    return fn(value)


def apply_all(spec, value):
    """spec: containers and objects holding notebook functions."""
    return [f(value) for f in spec["fns"]] + [spec["obj"].run(value), spec["part"](value)]


def cpu_task(v):
    return float(np.sqrt(v) * SCALE)


def pool_map(kind, method, xs):
    import concurrent.futures as cf
    import multiprocessing as mp
    ctx = mp.get_context(method)
    if kind == "executor":
        with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            return list(ex.map(cpu_task, xs))
    with ctx.Pool(2) as pool:
        return pool.map(cpu_task, xs)


def _fj_prefix():
    return get_ipython().find_magic("flame", "cell").__self__.runner._shared_prefix
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("args-home")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("args-cwd"), extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        k.run(SETUP)
        k.run(
            "%flame_service echo_s = echo\n%flame_service apply_s = apply\n%flame_service all_s = apply_all"
        )
        assert k.value("echo_s(1).get(timeout=60)") == 1
        yield k


def ok(k: KernelSession, code: str, timeout: float = 180) -> str:
    r = k.execute(textwrap.dedent(code), timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r.stdout


def shared_objects(runtime: Any, k: KernelSession) -> int:
    prefix = k.value("_fj_prefix()") + "/"
    return sum(1 for info in runtime.cache_store.list_objects() if info.key.startswith(prefix))


LARGE = {
    "dataframe": "pd.DataFrame({'a': np.arange(7 << 17, dtype='float64'), 'b': np.arange(7 << 17) % 7})",
    "series": "pd.Series(np.random.default_rng(1).random(1 << 20), name='s')",
    "int_list": "list(range(1_000_000))",
    "big_str": "'x' * 6_000_000",
    "dict_of_arrays": "{'a': np.ones(1 << 19), 'b': np.zeros((512, 1024), dtype='float32')}",
    "tuple_of_arrays": "(np.arange(1 << 19), np.full(1 << 18, 2.5))",
}

SAME = """
def same(a, b):
    if isinstance(a, pd.DataFrame) or isinstance(a, pd.Series):
        return type(a) is type(b) and a.equals(b)
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
"""


@pytest.mark.parametrize("kind", list(LARGE))
def test_large_arguments_of_any_type_round_trip_and_upload_once(
    kernel: KernelSession, runtime: Any, kind: str
) -> None:
    ok(kernel, SAME + f"big = {LARGE[kind]}")
    before = shared_objects(runtime, kernel)
    assert kernel.value("same(echo_s(big).get(timeout=120), big)") is True
    after_first = shared_objects(runtime, kernel)
    assert after_first == before + 1, (before, after_first)
    assert kernel.value("same(echo_s(big).get(timeout=120), big)") is True  # same content: no upload
    assert kernel.value("same(echo_s(x=big).get(timeout=120), big)") is True  # as a keyword too
    assert shared_objects(runtime, kernel) == after_first


def test_large_keyword_arguments_and_a_changed_value_uploads_once_more(
    kernel: KernelSession, runtime: Any
) -> None:
    ok(kernel, SAME + "df = pd.DataFrame({'v': np.arange(1 << 20, dtype='int64')})")
    before = shared_objects(runtime, kernel)
    assert kernel.value("same(echo_s(1, frame=df).get(timeout=120), (1, {'frame': df}))") is True
    ok(kernel, "df.loc[5, 'v'] = -1")
    assert kernel.value("same(echo_s(1, frame=df).get(timeout=120), (1, {'frame': df}))") is True
    assert shared_objects(runtime, kernel) == before + 2


def test_many_medium_arguments_stay_under_the_message_limit(kernel: KernelSession) -> None:
    ok(
        kernel,
        "parts = [bytes([i]) * 900_000 for i in range(6)]\nrows = [list(range(i, 90_000 + i)) for i in range(6)]",
    )
    assert kernel.value("echo_s(*[parts]).get(timeout=120) == parts") is True
    ok(kernel, "%flame_service many_s = lambda *a: [len(x) for x in a]")
    assert kernel.value("many_s(*parts).get(timeout=120)") == [900_000] * 6
    assert kernel.value("many_s(*rows).get(timeout=120)") == [90_000] * 6


def test_a_task_over_the_limit_all_the_same_says_what_to_do(kernel: KernelSession) -> None:
    ok(
        kernel,
        """
        G1, G2, G3, G4, G5, G6 = ([bytes([i]) * 900_000] for i in range(6))
        def uses_globals():
            return len(G1 + G2 + G3 + G4 + G5 + G6)
        %flame_service globals_s = uses_globals
        try:
            globals_s()
        except fj.FlameJupyterError as e:
            too_big = str(e)
        """,
    )
    text = kernel.value("too_big")
    assert "4 MiB" in text and "threshold" in text and "one container" in text, text


def test_notebook_functions_inside_arguments_travel_with_their_globals(kernel: KernelSession) -> None:
    ok(
        kernel,
        """
        OFFSET = 10
        def metric(a):
            return float(np.mean(a) * SCALE + OFFSET)
        def on_epoch(a):
            return int(np.argmax(a))
        class Tanh:
            def __init__(self, fn):
                self.fn = fn
            def run(self, a):
                return float(self.fn(a).sum())
        class Pipeline:
            def __init__(self, steps):
                self.steps = steps
            def __call__(self, a):
                for _, step in self.steps:
                    a = step.run(a) if hasattr(step, "run") else step(a)
                return a
        collate_fn = lambda batch: np.stack(batch) * SCALE
        """,
    )
    assert kernel.value("apply_s(lambda a: float(np.tanh(a).sum()), np.zeros(3)).get(timeout=60)") == 0.0
    assert kernel.value("apply_s(metric, np.array([1.0, 3.0])).get(timeout=60)") == 16.0
    assert (
        kernel.value(
            "apply_s(Pipeline([('tanh', Tanh(lambda a: np.tanh(a) * SCALE))]), np.zeros(4)).get(timeout=60)"
        )
        == 0.0
    )
    spec = (
        "{'fns': [metric, on_epoch, lambda a: float(np.max(a) + OFFSET)], "
        "'obj': types.SimpleNamespace(run=lambda a: float(np.min(a) * SCALE)), "
        "'part': functools.partial(apply, on_epoch)}"
    )
    assert kernel.value(f"all_s({spec}, np.array([1.0, 5.0, 2.0])).get(timeout=60)") == [
        18.0,
        1,
        15.0,
        3.0,
        1,
    ]
    assert kernel.value("apply_s(collate_fn, [np.ones(2), np.zeros(2)]).get(timeout=60).tolist()") == [
        [3.0, 3.0],
        [0.0, 0.0],
    ]
    ok(kernel, "OFFSET = 20")  # the current value travels with every call
    assert kernel.value("apply_s(metric, np.array([1.0, 3.0])).get(timeout=60)") == 26.0


def test_a_notebook_function_made_remotely_comes_back_with_its_globals(kernel: KernelSession) -> None:
    ok(
        kernel,
        """
        def make_scaler(k):
            def scale(a):
                return float(np.sum(a) * k * SCALE)
            return scale
        """,
    )
    assert kernel.value("apply_s(make_scaler, 2).get(timeout=60)(np.ones(2))") == 12.0


@pytest.mark.parametrize(
    ("kind", "method"), [("executor", "fork"), ("executor", "spawn"), ("pool", "fork"), ("pool", "spawn")]
)
def test_a_process_pool_inside_a_task_uses_notebook_functions(
    kernel: KernelSession, kind: str, method: str
) -> None:
    ok(kernel, "%flame_service pool_s = pool_map")
    got = kernel.value(f"pool_s({kind!r}, {method!r}, [1, 4, 9]).get(timeout=120)", timeout=180)
    assert got == [3.0, 6.0, 9.0]


def test_a_generator_result_names_the_function_and_says_what_to_do(kernel: KernelSession) -> None:
    ok(
        kernel,
        """
        def numbers(n):
            for i in range(n):
                yield i
        %flame_service numbers_s = numbers
        try:
            numbers_s(3).get(timeout=60)
        except TypeError as e:
            gen_error = str(e)
        """,
    )
    text = kernel.value("gen_error")
    assert "numbers" in text and "generator" in text and "list(" in text, text
    assert "cannot pickle" not in text, text


def test_a_served_module_like_instance_exposes_inherited_methods(kernel: KernelSession) -> None:
    ok(
        kernel,
        """
        class Module:
            def __call__(self, x):
                return self.forward(x)
            def parameters(self):
                return [self.w]
        class Net(Module):
            def __init__(self):
                self.w = 2.0
            def forward(self, x):
                return float(np.sum(x) * self.w)
        %flame_service net = Net()
        """,
    )
    assert kernel.value("net(np.ones(3)).get(timeout=60)") == 6.0
    assert kernel.value("net.forward(np.ones(2)).get(timeout=60)") == 4.0
    assert kernel.value("net.parameters().get(timeout=60)") == [2.0]
    assert "forward" in kernel.value("dir(net)")


def test_close_says_it_removed_the_notebook_variable_and_the_panel_drops_it(kernel: KernelSession) -> None:
    out = ok(kernel, "%flame_service one_s = echo\n%flame_service --close one_s")
    assert "one_s" in out and "removed the notebook variable" in out, out
    assert kernel.value("'one_s' in globals()") is False
    ok(
        kernel,
        """
        from flame_jupyter.display import panel_status
        panel_status.CLOSED_SHOWN_SECONDS = 0.5
        %flame_service two_s = echo
        %flame_service three_s = echo
        """,
    )
    out = ok(kernel, "%flame_service --close-all")
    for name in ("two_s", "three_s", "echo_s", "apply_s"):
        assert name in out, out
    assert "removed the notebook variable" in out, out
    assert kernel.value("[n for n in ('two_s', 'three_s', 'echo_s') if n in globals()]") == []
    listed = "[(r['name'], r['closed']) for r in panel_status.kernel_status()['services']]"
    shown = {name: closed for name, closed in kernel.value(listed)}
    assert shown.get("two_s") is True, shown  # just closed: still listed, as closed
    ok(kernel, "import time; time.sleep(1.0)")
    names = [name for name, _ in kernel.value(listed)]
    for name in ("one_s", "two_s", "three_s", "echo_s"):
        assert name not in names, names
