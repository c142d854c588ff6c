"""Calls that queue travel together (flame_jupyter.pipes): per-call semantics are unchanged.

Real scripts against the session's embedded runtime. A small pipe depth makes batches certain;
each test checks that batches were really sent (``svc._pipe.batches``), so none can pass by
sending every call alone.
"""

from __future__ import annotations

from pathlib import Path

from tests.flame_jupyter.test_sdk import run_script


def test_a_burst_keeps_each_calls_result_error_and_output(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        dict(script_env, FLAME_JUPYTER_PIPE_DEPTH="2"),
        """
        import json

        def work(i):
            if i % 7 == 3:
                raise ValueError(f"bad item {i}")
            if i % 50 == 0:
                print(f"item {i} says hi")
            return {"i": i, "sq": i * i}

        with fj.Runner("coalesce-burst") as rr:
            svc = rr.service(work)
            fs = [svc(i) for i in range(300)]
            fj.wait(fs, timeout=120)
            ok = bad = 0
            for i, f in enumerate(fs):
                if i % 7 == 3:
                    assert f.state == "failed", (i, f.state)
                    try:
                        f.get()
                    except ValueError as e:
                        assert str(e) == f"bad item {i}", e
                        bad += 1
                else:
                    assert f.get() == {"i": i, "sq": i * i}, (i, f.get())
                    assert f.state == "done"
                    ok += 1
            texts = {i: fs[i].text for i in range(0, 300, 50) if i % 7 != 3}
            assert all(texts[i] == f"item {i} says hi\\n" for i in texts), texts
            assert fs[1].text == "", fs[1].text
            print("ok", ok, "bad", bad, "batched", svc._pipe.batches > 0, "coalesced", sum(f.coalesced for f in fs) > 100)
        """,
    )
    assert out[-1] == "ok 257 bad 43 batched True coalesced True", out


def test_cancel_of_a_waiting_call_and_of_a_call_in_a_sent_batch(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    marks = tmp_path / "ran"
    marks.mkdir()
    out = run_script(
        tmp_path,
        dict(script_env, FLAME_JUPYTER_PIPE_DEPTH="1"),
        f"""
        import os, time
        MARKS = {str(marks)!r}

        def step(i, pause):
            open(os.path.join(MARKS, str(i)), "w").close()
            time.sleep(pause)
            return i

        with fj.Runner("coalesce-cancel") as rr:
            svc = rr.service(step)
            first = svc(0, 1.5)                      # alone: the pipe is now full
            queued = [svc(i, 0.0) for i in range(1, 5)]
            assert all(f.coalesced for f in queued)
            assert queued[0].cancel()                # still in the kernel: never sent
            assert queued[0].state == "cancelled", queued[0].state
            first.get(timeout=60)                    # the rest leave as one batch now
            second = svc(10, 1.5)                    # pipe full again behind that batch
            later = [svc(i, 0.0) for i in range(11, 15)]
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(MARKS, "10")) and time.monotonic() < deadline:
                time.sleep(0.02)
            later[2].cancel()                        # sent in a batch, not started: skipped there
            fj.wait(later + queued, timeout=60)
            states = [f.state for f in queued + later]
            try:
                later[2].get()
            except fj.CancelledError:
                print("cancelled error")
            print(states, sorted(os.listdir(MARKS), key=int), svc._pipe.batches >= 2)
        """,
    )
    assert out[-2] == "cancelled error", out
    assert out[-1] == (
        "['cancelled', 'done', 'done', 'done', 'done', 'done', 'cancelled', 'done'] "
        "['0', '2', '3', '4', '10', '11', '12', '14'] True"
    ), out


def test_coalesced_results_pass_on_as_arguments_and_nest(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        dict(script_env, FLAME_JUPYTER_PIPE_DEPTH="1"),
        """
        import numpy as np

        def make(i):
            return np.arange(i, dtype=np.int64)

        def total(a):
            return int(a.sum())

        with fj.Runner("coalesce-pass") as rr:
            mk, tot = rr.service(make), rr.service(total)
            arrays = [mk(i) for i in range(20)]
            assert sum(f.coalesced for f in arrays) >= 10
            sums = [tot(a) for a in arrays]          # each future passed on: its value travels
            print(fj.get(sums) == [int(np.arange(i).sum()) for i in range(20)])
            print(fj.get([a for a in fj.as_completed(arrays)]) is not None)
        """,
    )
    assert out[-2:] == ["True", "True"], out


def test_coalescing_can_be_turned_off(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        dict(script_env, FLAME_JUPYTER_PIPE_DEPTH="1", FLAME_JUPYTER_COALESCE="0"),
        """
        def inc(x):
            return x + 1

        with fj.Runner("coalesce-off") as rr:
            svc = rr.service(inc)
            fs = [svc(i) for i in range(30)]
            print(fj.get(fs) == list(range(1, 31)), svc._pipe.batches, any(f.coalesced for f in fs))
        """,
    )
    assert out[-1] == "True 0 False", out
