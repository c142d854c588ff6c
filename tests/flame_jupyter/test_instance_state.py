"""An instance service keeps its object live in its one instance (flame_jupyter/live_state.py).

Scripts with code in ``__main__`` run the SDK against a 2-slot embedded runtime of this module
(real flamepy, gRPC, Flight, the stock runpy service). The object is never saved to the cache, so
state that cannot be pickled works; the loss of the instance that held it is reported once, as
``state was lost because ...``, and later calls run on a new copy of the object as captured.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO

COUNTER = """
import os, signal
import flame_jupyter as fj

class Counter:
    def __init__(self, start):
        self.n = start
    def add(self, k):
        self.n += k
        return self.n
    def pid(self):
        return os.getpid()
    def add_then_fail(self, k):
        self.n += k
        raise ValueError(f"failed at {self.n}")
    def keep_a_generator(self):
        self.pending = (i for i in range(3))  # cannot be pickled: fine, the object is never saved
        return next(self.pending) + self.n

    def add_then_spin(self, k):
        import time
        self.n += k
        print("added", flush=True)
        while True:  # Python bytecode: a cancel interrupts it here
            time.sleep(0.01)

def square(x):
    return x * x

def outcome(f):
    try:
        return f.get(timeout=120)
    except Exception as e:
        text = str(e)
        return "lost" if "state was lost because" in text else type(e).__name__ + ": " + text[:120]
"""


@pytest.fixture(scope="module")
def two_slots() -> Iterator[object]:
    from flame_local import LocalRuntime

    with LocalRuntime(max_instances=2, shutdown_grace=2.0) as rt:
        yield rt


def run_script(rt: object, tmp_path: Path, body: str, timeout: float = 240) -> list[str]:
    script = tmp_path / "script.py"
    script.write_text(COUNTER + textwrap.dedent(body))
    env = dict(os.environ, HOME=str(tmp_path), **rt.client_env())  # type: ignore[attr-defined]
    env.pop("FLAME_CACHE_STORAGE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout.splitlines()


def test_state_stays_live_across_calls_errors_and_other_services(two_slots: object, tmp_path: Path) -> None:
    out = run_script(
        two_slots,
        tmp_path,
        """
        with fj.Runner("live-kept") as rr:
            c = rr.service(Counter(10))
            other = rr.service(Counter(0))
            sq = rr.service(square)
            pid = c.pid().get()
            print(c.add(1).get(), c.keep_a_generator().get(), other.add(5).get())
            print([sq(i).get() for i in range(6)], other.add(5).get())
            print(outcome(c.add_then_fail(100)))  # its change stays, as in a Ray actor
            futures = [c.add(1) for _ in range(20)]  # queued together (maybe one batch)
            print(fj.get(futures)[-1], c.pid().get() == pid)
        """,
    )
    assert out == [
        "11 11 5",
        "[0, 1, 4, 9, 16, 25] 10",
        "ValueError: failed at 111",
        "131 True",
    ]


def test_a_cancelled_call_keeps_its_changes_and_the_instance_serves_on(
    two_slots: object, tmp_path: Path
) -> None:
    out = run_script(
        two_slots,
        tmp_path,
        """
        import time
        with fj.Runner("live-cancel") as rr:
            c = rr.service(Counter(10))
            pid = c.pid().get()
            f = c.add_then_spin(5)
            deadline = time.monotonic() + 60
            while "added" not in "".join(t for _, t in f.output) and time.monotonic() < deadline:
                time.sleep(0.05)
            f.cancel()
            try:
                f.get(timeout=60)
            except fj.CancelledError:
                print("cancelled")
            print(c.add(1).get(), c.pid().get() == pid)
        """,
    )
    assert out == ["cancelled", "16 True"]


def test_a_lost_instance_is_reported_once_then_a_new_copy_serves(two_slots: object, tmp_path: Path) -> None:
    out = run_script(
        two_slots,
        tmp_path,
        """
        with fj.Runner("live-lost") as rr:
            c = rr.service(Counter(10))
            print(c.add(1).get(), c.add(1).get())
            os.kill(c.pid().get(), signal.SIGKILL)  # the instance that holds the object ends
            seen = [outcome(c.add(1)) for _ in range(4)]
            print(seen.count("lost"), seen[-2:])
        """,
    )
    # the call sent to the dead process fails with the runtime's own error; the next one is
    # refused by the new instance (the state is lost); then calls run on a new copy (10 + 1)
    assert out[0] == "11 12"
    assert out[1] == "1 [11, 12]", out


def test_an_instance_reclaimed_at_the_process_limit_is_told_once(two_slots: object, tmp_path: Path) -> None:
    two_slots.settings.max_processes = 2  # type: ignore[attr-defined]  # read on every pass
    try:
        out = run_script(
            two_slots,
            tmp_path,
            """
            with fj.Runner("live-reclaimed") as rr:
                keepers = [rr.service(Counter(10)) for _ in range(2)]
                print([k.add(1).get() for k in keepers])
                print(rr.service(square)(7).get())  # a parked instance goes for it
                seen = [[outcome(k.add(1)) for _ in range(3)] for k in keepers]
                print(sorted(seen, key=str))
            """,
        )
    finally:
        two_slots.settings.max_processes = None  # type: ignore[attr-defined]
    assert out[:2] == ["[11, 11]", "49"]
    # one keeper kept its instance; the other's next call is the runtime's "state was lost",
    # and its later calls run on a new copy, without a second report
    assert out[2] == str(sorted([[12, 13, 14], ["lost", 11, 12]], key=str)), out
