"""What the test notebooks do, and what the widgets must end up showing (shared by the nbclient
and the browser tests).

Both notebooks bind ``f_main`` (progress 1..10, prints, result 9), ``f_fail`` (ValueError
"boom: bad input 7"), ``f_table`` (a DataFrame) and ``f_long`` (runs until cancelled), then show
the status panel. ``widgets_simulated`` drives real ObjectFutures from background threads on a
real embedded runtime; ``widgets_sdk`` calls real notebook functions through
``flame_jupyter.Runner`` services.
"""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"

FINAL_TOTALS = {"queued": 0, "running": 0, "done": 2, "failed": 1, "cancelled": 1}

SCENARIOS: dict[str, dict] = {
    "widgets_simulated": {
        "labels": {"main": "score(3)", "fail": "explode(7)", "table": "squares(5)", "long": "long_job()"},
        "services": {"scorer": FINAL_TOTALS},
        "close": "scorer",
        "traceback": "line 3, in explode",
    },
    "widgets_sdk": {
        "labels": {"main": "score", "fail": "explode", "table": "squares", "long": "long_job"},
        "services": {
            "score": {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0},
            "explode": {"queued": 0, "running": 0, "done": 0, "failed": 1, "cancelled": 0},
            "squares": {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0},
            "long_job": {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 1},
        },
        "close": "long_job",
        "traceback": "in explode",
    },
}

# Appended to a notebook for nbclient (no browser to click): Cancel the long task the way the
# button does, then block until every future finished, every widget settled and the panel shows
# the final counts, so the saved widget state is the final one.
SETTLE_CELL_TEMPLATE = """
import time as _time
from flame_jupyter.status_panel import panel as _panel
from flame_jupyter.widgets import pump as _pump, widget_for as _widget_for

_futures = [f_main, f_fail, f_table, f_long]
_widgets = [_widget_for(_f) for _f in _futures]  # the models the cells displayed
_widgets[-1].handle_action("cancel", {})  # what the Cancel button sends
for _f in _futures:
    assert _f.wait(180), _f
_deadline = _time.monotonic() + 120
while _time.monotonic() < _deadline and any(_w.watching for _w in _widgets):
    _time.sleep(0.1)
assert not any(_w.watching for _w in _widgets), "widgets still watching their finished futures"
_p = _panel()
while _time.monotonic() < _deadline and not (_p.totals == TOTALS and _p.show_instances):
    _time.sleep(0.1)
assert _p.totals == TOTALS and _p.show_instances, (_p.totals, _p.show_instances)
assert _pump().wait_idle(30)
print("settled", [(_f.label, _f.state) for _f in _futures], _p.totals)
"""


def settle_cell(totals: dict[str, int] = FINAL_TOTALS) -> str:
    """The settle cell's code, waiting for the panel to show ``totals``."""
    return SETTLE_CELL_TEMPLATE.replace("TOTALS", repr(totals))
