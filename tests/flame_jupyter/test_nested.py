"""Calls from remote code: services, futures and maps captured into remote code (issue 14).

Plain scripts and a real kernel against embedded runtimes (real flamepy, gRPC, Flight, the stock
runpy service). Until the runtime lends the slot of an instance that waits, nesting needs as
many instances as calls wait at once: these tests run on a runtime with 8 instances, and the
recursion also with the default settings (expected to fail until slot lending lands).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.flame_jupyter.test_sdk import run_script
from tests.kernel_helpers import KernelSession

DEFS = """
import time
def leaf(x):
    return x * x
def fan(n):
    futures = [leaf_svc(i) for i in range(n)]
    return sum(f.get() for f in futures)
def fib(n):
    if n < 2:
        return n
    return fib_svc(n - 1).get() + fib_svc(n - 2).get()
"""


def with_defs(body: str) -> str:
    return DEFS + textwrap.dedent(body)


@pytest.fixture(scope="module")
def wide_env(flame_home: Path) -> Iterator[dict[str, str]]:
    """A runtime with 8 instances (so waiting calls cannot take every slot) and a script env for it."""
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=8, shutdown_grace=2.0).start()
    try:
        env = dict(os.environ, HOME=str(flame_home), **rt.client_env())
        env.pop("FLAME_CACHE_STORAGE", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        yield env
    finally:
        rt.stop()


def test_a_task_fans_out_to_another_service_and_four_do_at_once(
    tmp_path: Path, wide_env: dict[str, str]
) -> None:
    out = run_script(
        tmp_path,
        wide_env,
        with_defs(
            """
        class Stats:
            def total(self, xs):
                return sum(leaf_svc(x).get() for x in xs)
            def via_method(self, xs):
                return [f.get() for f in [stats.total(xs)]]
        with fj.Runner() as rr:
            leaf_svc = rr.service(leaf)
            fan_svc = rr.service(fan)
            print("fan", fan_svc(4).get(timeout=120))
            print("four", [f.get(timeout=180) for f in [fan_svc(n) for n in (1, 2, 3, 4)]])
            stats = rr.service(Stats)
            print("method", stats.total([1, 2, 3]).get(timeout=120))
            def mapped(n):
                return leaf_svc.map(range(n)).get()
            print("map", rr.service(mapped)(20).get(timeout=120) == [x * x for x in range(20)])
            def passes_on(x):
                f = leaf_svc(x)
                return leaf_svc(f).get(), type(f.ref()).__name__
            print("ref", rr.service(passes_on)(3).get(timeout=120))
        """
        ),
        timeout=300,
    )
    assert out == ["fan 14", "four [0, 1, 5, 14]", "method 14", "map True", "ref (81, 'ObjectRef')"]


def test_recursion_through_its_own_service(tmp_path: Path, wide_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        wide_env,
        with_defs(
            """
        with fj.Runner() as rr:
            fib_svc = rr.service(fib)
            print("fib", fib_svc(6).get(timeout=240))
        """
        ),
        timeout=300,
    )
    assert out == ["fib 8"]


def test_recursion_deeper_than_the_slots_with_default_settings(tmp_path: Path, flame_home: Path) -> None:
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=2, shutdown_grace=2.0).start()
    try:
        env = dict(os.environ, HOME=str(flame_home), **rt.client_env())
        env.pop("FLAME_CACHE_STORAGE", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        out = run_script(
            tmp_path,
            env,
            with_defs(
                """
            with fj.Runner() as rr:
                fib_svc = rr.service(fib)
                leaf_svc = rr.service(leaf)
                fan_svc = rr.service(fan)
                print("fib", fib_svc(6).get(timeout=120))
                print("four", [f.get(timeout=120) for f in [fan_svc(n) for n in (1, 2, 3, 4)]])
            """
            ),
            timeout=300,
        )
    finally:
        rt.stop()
    assert out == ["fib 8", "four [0, 1, 5, 14]"]


def test_futures_and_maps_passed_into_remote_code(tmp_path: Path, wide_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        wide_env,
        with_defs(
            """
        with fj.Runner() as rr:
            leaf_svc = rr.service(leaf)
            seven = leaf_svc(7)
            def plus_one(xs):
                return [x.get() + 1 for x in xs]
            def from_global():
                return seven.get() * 2, seven.done(), type(seven.ref()).__name__
            print("arg", rr.service(leaf)(seven).get(timeout=60))
            print("inside", rr.service(plus_one)([seven, leaf_svc(2)]).get(timeout=60))
            print("global", rr.service(from_global)().get(timeout=60))
            group = leaf_svc.map(range(5))
            def total():
                return sum(group), len(group), group[4]
            print("map", rr.service(total)().get(timeout=60))
            print("item", rr.service(plus_one)([group[3]]).get(timeout=60))
        """
        ),
        timeout=240,
    )
    assert out == [
        "arg 2401",
        "inside [50, 5]",
        "global (98, True, 'ObjectRef')",
        "map (30, 5, 16)",
        "item [10]",
    ]


def test_cancel_of_the_outer_call_cancels_the_inner_one(tmp_path: Path, wide_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        wide_env,
        """
        import time
        from flamepy.core import open_session
        def slow():
            time.sleep(60)
            return "slow"
        def outer():
            f = slow_svc()
            print("inner", f.task_id, flush=True)
            return f.get()
        with fj.Runner() as rr:
            slow_svc = rr.service(slow)
            fut = rr.service(outer)()
            deadline = time.monotonic() + 90
            while "inner" not in fut.text and time.monotonic() < deadline:
                time.sleep(0.2)
            task_id = fut.text.split()[1]
            time.sleep(1.0)  # the inner call runs
            t = time.monotonic()
            fut.cancel()
            try:
                fut.get(timeout=60)
            except fj.CancelledError:
                print("outer cancelled", time.monotonic() - t < 30)
            session = open_session(slow_svc.session_id)
            deadline = time.monotonic() + 30
            task = session.get_task(task_id)
            while not task.is_completed() and time.monotonic() < deadline:
                time.sleep(0.2)
                task = session.get_task(task_id)
            print("inner", task.state.name, time.monotonic() - t < 30)
            print("message", any("Cancelled" in (e.message or "") for e in task.events))
        """,
        timeout=240,
    )
    assert out == ["outer cancelled True", "inner FAILED True", "message True"]


def test_inner_output_is_forwarded_when_asked_and_failures_keep_their_type(
    tmp_path: Path, wide_env: dict[str, str]
) -> None:
    out = run_script(
        tmp_path,
        wide_env,
        """
        def talk(x):
            print("inner says", x)
            fj.progress(1, 2, "half")
            return x
        def bad(x):
            raise KeyError(x)
        def outer(x):
            quiet = talk_svc(x).get()
            loud = talk_svc.options(forward_output=True)(x + 1).get()
            try:
                bad_svc(x).get()
            except KeyError as e:
                return quiet, loud, repr(e)
        with fj.Runner() as rr:
            talk_svc = rr.service(talk)
            bad_svc = rr.service(bad)
            f = rr.service(outer)(1)
            print("result", f.get(timeout=120))
            print("output", f.text.strip().splitlines(), f.progress)
        """,
        timeout=240,
    )
    assert out == ["result (1, 2, 'KeyError(1)')", "output ['inner says 2'] (1.0, 2.0, 'half')"]


def test_a_flame_cell_calls_a_service_in_a_real_kernel(tmp_path: Path, wide_env: dict[str, str]) -> None:
    env: dict[str, Any] = {k: v for k, v in wide_env.items() if k.startswith("FLAME_") or k == "HOME"}
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        code = textwrap.dedent(
            """
            import flame_jupyter as fj
            rr = fj.Runner()
            def leaf(x):
                return x * x
            leaf_svc = rr.service(leaf)
            """
        )
        assert k.execute(code, timeout=120).status == "ok"
        r = k.execute("%%flame\nsum(f.get() for f in [leaf_svc(i) for i in range(5)])", timeout=180)
        assert r.status == "ok", r.error_text() + r.stderr
        assert r.text.endswith("result: 30"), r.text
        r = k.execute(
            "def fan(n):\n    return [leaf_svc(i).get() for i in range(n)]\nrr.service(fan)(3).get(timeout=120)",
            timeout=180,
        )
        assert r.status == "ok", r.error_text() + r.stderr
        assert r.text == "[0, 1, 4]", r.text
        k.execute("rr.close()", timeout=60)
