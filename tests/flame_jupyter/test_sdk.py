"""The plain SDK (flame_jupyter.Runner / AsyncRunner), as scripts with code in ``__main__``.

Each test runs a real script against the session's embedded runtime (real flamepy, gRPC, Flight,
the stock runpy service), in a process where importing IPython is impossible.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.conftest import PYTHON
from tests.guide import GUIDE_DEFS

NO_IPYTHON = """
import sys
class _NoIPython:
    def find_spec(self, name, path=None, target=None):
        if name == "IPython" or name.startswith("IPython.") or name == "ipykernel" or name == "ipywidgets":
            raise ImportError(f"{name} is blocked in this test: the SDK must not need it")
sys.meta_path.insert(0, _NoIPython())
import flame_jupyter as fj

def cancel_when_running(f, within):
    # Wait (bounded) until f runs, cancel it; print whether get() raised CancelledError in time.
    import time
    deadline = time.monotonic() + 60
    while f.state != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    t = time.monotonic()
    f.cancel()
    try:
        f.get(timeout=30)
    except fj.CancelledError:
        print("cancelled", f.state, time.monotonic() - t < within)
"""


def run_script(tmp_path: Path, env: dict[str, str], body: str, timeout: float = 120) -> list[str]:
    script = tmp_path / "script.py"
    script.write_text(NO_IPYTHON + textwrap.dedent(body) + "\nassert 'IPython' not in sys.modules\n")
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout.splitlines()


def test_runner_guide_examples_with_the_sdk(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        GUIDE_DEFS
        + textwrap.dedent(
            """
        with fj.Runner("sdk-guide") as rr:
            print(rr.service(sum_fn)(1, 3).get())
            cnt_s = rr.service(Counter)
            cnt_s.add(1)
            cnt_s.add(3)
            print(cnt_s.get_counter().get())
            cnt_os = rr.service(Counter(10))
            cnt_os.add(1)
            cnt_os.add(3)
            res = cnt_os.get_counter()
            print(res.get())
            cnt_os.add(res)
            print(cnt_os.get_counter().get())
            print(rr.service(sum_fn)(5, 3).get(), rr.service(Calculator()).multiply(4, 7).get())
            print(rr.service(greet)(name="World", greeting="Hi").get())
        """
        ),
    )
    # The class service autoscales: Flame gives the burst an instance (and a Counter) per call.
    assert out[1] in {"0", "1", "3", "4"}
    assert out[:1] + out[2:] == ["4", "14", "28", "8 28", "Hi, World!"]


def test_globals_are_current_unless_snapshot(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        SCALE = 2
        def helper(x):
            return x * SCALE
        def scaled(x):
            return helper(x) + 1

        with fj.Runner() as rr:
            live = rr.service(scaled)
            frozen = rr.service(scaled, snapshot=True)
            print(live(10).get(), frozen(10).get())
            SCALE = 5
            print(live(10).get(), frozen(10).get())
        """,
    )
    assert out == ["21 21", "51 21"]


def test_output_and_progress_stream_before_the_call_ends(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        import time
        def work(n):
            for i in range(n):
                print(f"step {i}", flush=True)
                fj.progress(i + 1, n, f"step {i}")
                time.sleep(0.4)
            return "ok"

        with fj.Runner() as rr:
            f = rr.service(work)(6)
            seen_output_while_running = seen_progress = None
            deadline = time.monotonic() + 60
            while not f.done() and time.monotonic() < deadline:
                if f.output and seen_output_while_running is None:
                    seen_output_while_running = "".join(t for _, t in f.output)
                if f.progress and 0 < f.progress[0] < 6:
                    seen_progress = f.progress
                time.sleep(0.05)
            print(f.get(), f.state)
            print(repr(seen_output_while_running.splitlines()[0]))
            print(seen_progress[1], seen_progress[2].startswith("step"))
            print("".join(t for _, t in f.output).split())
        """,
    )
    assert out[0] == "ok done"
    assert out[1] == "'step 0'"
    assert out[2] == "6.0 True"
    assert out[3] == str([w for i in range(6) for w in ("step", str(i))])


def test_remote_exception_keeps_its_type_and_source_line(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        def parse(text):
            return int(text)  # the line the traceback must show

        with fj.Runner() as rr:
            f = rr.service(parse)("not a number")
            try:
                f.get()
            except ValueError as e:
                print(type(e).__name__, f.state)
                print("int(text)  # the line the traceback must show" in e.remote_traceback, str(e))
                print(e.remote_type)
        """,
    )
    assert out == [
        "ValueError failed",
        "True invalid literal for int() with base 10: 'not a number'",
        "ValueError",
    ]


def test_cancel_stops_a_running_call_and_the_service_goes_on(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        import time
        def spin(n):
            total = 0
            for i in range(n):
                total += i
                time.sleep(0.01)
            return total

        with fj.Runner() as rr:
            svc = rr.service(spin)
            cancel_when_running(svc(100000), within=15)
            print(svc(10).get())
        """,
    )
    assert out == ["cancelled cancelled True", "45"]


def test_output_of_an_unshown_call_is_read_on_first_access(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    """get() does not spend a round trip on the output stream of a future nobody shows; the
    output is still complete when it is first read."""
    out = run_script(
        tmp_path,
        script_env,
        """
        def talk(x):
            print("said", x)
            return x

        with fj.Runner() as rr:
            svc = rr.service(talk)
            f = svc(7)
            print(f.get(), f.output)
            quiet = rr.service(lambda: 1)()
            print(quiet.get(), quiet.streams_closed)  # printed nothing, shown nowhere: not read yet
            print(quiet.output, quiet.displays, quiet.progress, quiet.streams_closed)
        """,
    )
    assert out == ["7 [('stdout', 'said 7\\n')]", "1 False", "[] [] None True"]


def test_many_futures_helpers_and_async_runner(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        import asyncio
        def sq(x):
            return x * x

        with fj.Runner() as rr:
            svc = rr.service(sq)
            fs = [svc(i) for i in range(8)]
            print(fj.get(fs))
            done, not_done = fj.wait(fs)
            print(len(done), len(not_done))
            print(fj.select(fs).get() in [i * i for i in range(8)])
            print(sorted(f.get() for f in fj.as_completed(fs)))
            print(type(fj.ref(fs[0])).__name__)

        async def main():
            async with fj.AsyncRunner("sdk-async") as runner:
                sum_s = runner.service(lambda a, b: a + b)
                res = await sum_s(1, 2)
                print(res.get())

        asyncio.run(main())
        """,
    )
    assert out == [
        str([i * i for i in range(8)]),
        "8 0",
        "True",
        str([i * i for i in range(8)]),
        "ObjectRef",
        "3",
    ]


def test_notebook_classes_come_back_as_themselves(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        from dataclasses import dataclass
        from enum import Enum

        @dataclass
        class Point:
            x: float
            y: float

        class Color(Enum):
            RED = 1
            BLUE = 2

        def scale(p, k):
            return Point(p.x * k, p.y * k)

        with fj.Runner() as rr:
            r = rr.service(scale)(Point(1, 2), 3).get()
            print(type(r) is Point, r == Point(3, 6))
            c = rr.service(lambda c: [Color.BLUE, c])(Color.RED).get()
            print(c[0] is Color.BLUE, c[1] is Color.RED)
            print(Point(0, 1))  # the notebook class itself is untouched
        """,
    )
    assert out == ["True True", "True True", "Point(x=0, y=1)"]


def test_cancel_of_code_stuck_in_c_is_still_a_cancel(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        import os, time
        with fj.Runner() as rr:
            svc = rr.service(lambda s: (time.sleep(s), os.getpid())[1])  # one C call: no bytecode to interrupt
            before = svc(0).get()
            cancel_when_running(svc(60), within=20)
            after = svc(0).get()
            print(type(after).__name__, after == before)  # the same instance serves on: it never died
        """,
    )
    assert out == ["cancelled cancelled True", "int True"]
