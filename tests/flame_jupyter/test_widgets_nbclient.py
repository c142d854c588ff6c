"""The widget notebooks executed headless with nbclient (``store_widget_state=True``).

A real kernel runs ``tests/browser/notebooks/*.ipynb`` (the same notebooks the browser test
drives) plus a last cell that presses Cancel on the long task the way the button does and waits
until everything finished and settled. The saved notebook must then hold, in its widget state,
the final state of every future (result previews, the remote error) and of the status panel, and
every future output must carry text/plain and text/html next to the widget view.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

from scenarios import FINAL_TOTALS, NOTEBOOKS, SCENARIOS, settle_cell  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(settle_cell()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["HOME"] = str(tmp_path)  # no ~/.flame/flame.yaml: the notebook starts the embedded runtime
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env, cwd=str(tmp_path))
    nbformat.write(nb, tmp_path / f"{name}.executed.ipynb")
    return nb


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_saved_widget_state_shows_final_states(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    labels = scenario["labels"]
    nb = execute(name, tmp_path)
    state: dict[str, Any] = nb.metadata["widgets"][WIDGET_STATE]["state"]
    models = {mid: m["state"] for mid, m in state.items()}
    futures = {s["label"]: s for s in models.values() if s.get("_kind") == "future"}
    panels = [s for s in models.values() if s.get("_kind") == "panel"]
    assert set(futures) == set(labels.values())
    assert all(m["model_name"] == "AnyModel" and m["model_module"] == "anywidget" for m in state.values())
    assert sum(1 for s in models.values() if s.get("_lib")) >= 1  # the view code is in the saved state

    main = futures[labels["main"]]
    assert main["state"] == "done"
    assert main["result"]["text/plain"] == "9" and main["result_info"].startswith("int · ")
    assert main["progress"] == [10, 10, "batch 10"]
    assert "processed batch 10\n" in "".join(text for _, text in main["output"])

    fail = futures[labels["fail"]]
    assert fail["state"] == "failed"
    assert fail["error_type"] == "ValueError" and fail["error_message"] == "boom: bad input 7"
    assert scenario["traceback"] in fail["error_traceback"]

    table = futures[labels["table"]]
    assert table["state"] == "done" and "<table" in table["result"]["text/html"]
    assert table["result_info"].startswith("DataFrame 5×2 · ")  # its shape, then its size

    long = futures[labels["long"]]
    assert long["state"] == "cancelled" and long["error_type"] == "Cancelled"

    (panel,) = panels
    assert panel["totals"] == FINAL_TOTALS
    rows = {r["name"]: r["counts"] for r in panel["services"]}
    for service, counts in scenario["services"].items():
        assert rows[service] == counts, (service, rows)
    (failure,) = panel["failures"]
    assert failure["error_type"] == "ValueError" and "boom: bad input 7" in failure["message"]
    assert panel["show_instances"] and panel["instances"], panel["instances"]
    assert "embedded Flame runtime" in panel["runtime"]

    # every displayed future / panel: the widget view (a saved model) plus the static fallbacks
    views = [
        o
        for cell in nb.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") in ("execute_result", "display_data") and WIDGET_VIEW in o.get("data", {})
    ]
    assert len(views) == 5
    for o in views:
        assert o["data"][WIDGET_VIEW]["model_id"] in state
        assert o["data"]["text/plain"] and o["data"]["text/html"]


SHOW_CELL = """
import threading, time
from concurrent.futures import Future
from flamepy.core.cache import ObjectRef
from flamepy.runner.runner import ObjectFuture as FlamepyFuture
from flame_jupyter.views import show
from flame_jupyter.future_state import state_of
from flame_jupyter.futures import ObjectFuture

inner = Future()
f = ObjectFuture(FlamepyFuture(inner), label="shown()", session_id="s1", service="svc")


def finish():
    time.sleep(1.0)
    state_of(f).running()
    state_of(f).add_output("stdout", "working\\n")
    time.sleep(0.5)
    state_of(f).set_preview({"text/plain": "'final answer'"})
    inner.set_result(ObjectRef(endpoint="grpc://127.0.0.1:9", key="a/b/c", version=1).encode())


threading.Thread(target=finish, daemon=True).start()
handle = show(f)
"""

WAIT_CELL = """
from flame_jupyter.widgets import pump
assert f.wait(60)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not pump().idle():
    time.sleep(0.1)
time.sleep(1.0)
"""


def test_show_makes_the_saved_fallbacks_final(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SHOW_CELL), nbformat.v4.new_code_cell(WAIT_CELL)]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["HOME"] = str(tmp_path)
    client.execute(env=env, cwd=str(tmp_path))
    (out,) = [o for o in nb.cells[0].outputs if o.get("output_type") == "display_data"]
    data = out["data"]
    assert WIDGET_VIEW in data  # still the live widget where widgets work
    assert 'data-state="done"' in data["text/html"] and "final answer" in data["text/html"]
    assert data["text/plain"].startswith("<ObjectFuture 'shown()' done") and "working" in data["text/plain"]
    state = nb.metadata["widgets"][WIDGET_STATE]["state"][data[WIDGET_VIEW]["model_id"]]["state"]
    assert state["state"] == "done" and state["result"] == {"text/plain": "'final answer'"}
