"""``svc.map`` / ``starmap`` / ``svc.method.map`` as plain scripts against the embedded runtime.

Real flamepy, gRPC, Flight and the stock runpy service; each script prints what it saw.
"""

from __future__ import annotations

from pathlib import Path

from tests.flame_jupyter.test_sdk import run_script


def test_map_in_order_starmap_and_method_map(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        def sq(x):
            return x * x
        def add(a, b):
            return a + b
        class Scaler:
            def __init__(self, k):
                self.k = k
            def scale(self, x):
                return self.k * x
        with fj.Runner() as rr:
            s = rr.service(sq)
            g = s.map(range(10_000))
            print("map", g.get(timeout=120) == [x * x for x in range(10_000)], len(g), g.done())
            c = g.counts
            print("counts", c["total"], c["done"], c["failed"], c["running"], c["queued"])
            print("item", g[1234].get(), g[-1].get(), type(g[5]).__name__, g[5].state)
            print("iter", list(s.map([3, 1, 2])) == [9, 1, 4])
            print("unordered", sorted(s.map(range(50), ordered=False, chunksize=3)) == [x * x for x in range(50)])
            print("star", rr.service(add).starmap([(1, 2), (3, 4)]).get(), rr.service(add).map([1, 2], [10, 20]).get())
            sc = rr.service(Scaler(3))
            print("method", sc.scale.map(range(5)).get(), sc.scale.starmap([(2,)]).get())
            print("ref", rr.service(sq)(g[3]).get())
            print("empty", s.map([]).get())
        """,
    )
    assert out == [
        "map True 10000 True",
        "counts 10000 10000 0 0 0",
        "item 1522756 99980001 ItemFuture done",
        "iter True",
        "unordered True",
        "star [3, 7] [11, 22]",
        "method [0, 3, 6, 9, 12] [6]",
        "ref 81",
        "empty []",
    ]


def test_failing_items_raise_the_first_or_return_in_place(tmp_path: Path, script_env: dict[str, str]) -> None:
    out = run_script(
        tmp_path,
        script_env,
        """
        def bad(x):
            if x in (7, 3):
                print("failing", x)
                raise ValueError(f"bad {x}")
            return x
        with fj.Runner() as rr:
            s = rr.service(bad)
            g = s.map(range(20), chunksize=4)
            try:
                g.get(timeout=60)
            except ValueError as e:
                print("raised", str(e).splitlines()[0])
            print("counts", g.counts["done"], g.counts["failed"], [i for i, _ in g.failures])
            r = s.map(range(10), return_exceptions=True).get(timeout=60)
            print("in place", [type(x).__name__ for x in r][2:5], str(r[3]).splitlines()[0])
            print("item", g[7].state, g[7].output, "bad(7)" in g.failures[1][1].remote_traceback or g.failures[1][1].remote_traceback)
        """,
    )
    assert out[0] == "raised bad 3"
    assert out[1] == "counts 18 2 [3, 7]"
    assert out[2] == "in place ['int', 'ValueError', 'int'] bad 3"
    assert out[3].startswith("item failed [('stdout', 'failing 7\\n')]")


def test_cancel_all_and_a_generator_pulled_lazily(tmp_path: Path, script_env: dict[str, str]) -> None:
    env = dict(script_env, FLAME_JUPYTER_MAP_SLOTS="2")
    out = run_script(
        tmp_path,
        env,
        """
        import time
        def slow(x):
            time.sleep(0.3)
            return x
        pulled = 0
        def gen(n):
            global pulled
            for i in range(n):
                pulled += 1
                yield i
        with fj.Runner() as rr:
            s = rr.service(slow)
            g = s.map(gen(200), chunksize=1)
            first = g[0].get(timeout=60)
            print("ahead", first, pulled, pulled <= 2 * 3 + 2)
            t = time.monotonic()
            print("cancel", g.cancel())
            try:
                g.get(timeout=60)
            except fj.CancelledError:
                print("cancelled", time.monotonic() - t < 30, g.done())
            c = g.counts
            print("counts", c["cancelled"] > 0, c["running"], c["queued"], c["total"] < 200, pulled < 200)
            g2 = s.map(x for x in range(12))
            print("gen", g2.get(timeout=60) == list(range(12)), len(g2))
        """,
        timeout=180,
    )
    assert out[0].startswith("ahead 0 ") and out[0].endswith(" True"), out
    assert out[1:] == ["cancel True", "cancelled True True", "counts True 0 0 True True", "gen True 12"]


def test_group_widget_fallback_and_saved_state_show_final_counts(tmp_path: Path) -> None:
    import os

    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import time, flame_jupyter as fj\nrr = fj.Runner()\ndef sq(x):\n    return x * x\nsvc = rr.service(sq)",
        "g = svc.map(range(2000))\n_ = g.show()",
        "assert g.wait(120)\ndeadline = time.monotonic() + 20\n"
        "from flame_jupyter.widgets.map_widget import map_widget_for\n"
        "while map_widget_for(g).watching and time.monotonic() < deadline:\n    time.sleep(0.1)\n"
        "time.sleep(0.5)\nprint(g.counts['done'])",
        "rr.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["HOME"] = str(tmp_path)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True)
    client.execute(env=env, cwd=str(tmp_path))
    out = nb.cells[1].outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in out
    assert "2000 done, 0 failed, 0 running, 0 queued of 2000" in out["text/plain"]
    assert "done <b>2000</b>" in out["text/html"] and "of <b>2000</b>" in out["text/html"]
    assert nb.cells[2].outputs[0]["text"].strip() == "2000"
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    maps = [m["state"] for m in state.values() if m["state"].get("_kind") == "map"]
    assert len(maps) == 1 and maps[0]["done"] == 2000 and maps[0]["total"] == 2000 and maps[0]["finished"]
