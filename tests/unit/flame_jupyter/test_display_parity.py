"""A future's (and the panel's) view is declared once: view model keys = widget traits = keys the JS reads.

The JavaScript reads model fields only as ``F.<name>`` (future) and ``P.<name>`` (panel), with
``F``/``P`` templated from the Python view models, and never spells a state name (``S.<NAME>``).
Each rule is also run on a drifted copy, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

import pytest
import traitlets as t

from flame_jupyter.display.future_view import FUTURE_FIELDS_NOT_DRAWN, FUTURE_VIEW_KEYS, FutureView
from flame_jupyter.display.map_view import MAP_FIELDS_NOT_DRAWN, MAP_VIEW_KEYS, MapView
from flame_jupyter.display.panel_view import PANEL_FIELDS_NOT_DRAWN, PANEL_VIEW_KEYS, PanelView
from flame_jupyter.display.states import STATES
from flame_jupyter.remote.wire import State
from flame_jupyter.widgets import _js
from flame_jupyter.widgets._base import FlameWidget
from flame_jupyter.widgets._traits import with_view_traits
from flame_jupyter.widgets.future_widget import SNAPSHOT_KEYS, FutureWidget
from flame_jupyter.widgets.map_widget import MAP_KEYS, MapWidget
from flame_jupyter.widgets.panel_widget import PANEL_KEYS, PanelWidget

LIB = _js.static_text("lib.js")
CSS = _js.static_text("lib.css")
STUB = _js.static_text("stub.js")


def _code(js: str) -> str:
    """``js`` without its comments and string literals' neighbours left intact (line comments only)."""
    return re.sub(r"(?m)^\s*//.*$", "", js)


def js_fields(js: str, obj: str) -> set[str]:
    """The field names the JS reads through ``obj`` (``F`` or ``P``): ``F.state``, ``F["state"]``."""
    code = _code(js)
    dotted = re.findall(rf"(?<![\w.]){obj}\.(\w+)", code)
    indexed = re.findall(rf"(?<![\w.]){obj}\[\"(\w+)\"\]", code)
    return set(dotted) | set(indexed)


def quoted_model_reads(js: str) -> set[str]:
    """Names read as ``model.get("...")`` (only the base widget's own traits may be)."""
    return set(re.findall(r"model\.get\(\s*[\"'](\w+)[\"']\s*\)", _code(js)))


def widget_fields(cls: type) -> set[str]:
    """The synced traits a widget class adds to :class:`FlameWidget`."""
    return set(cls.class_traits(sync=True)) - set(FlameWidget.class_traits(sync=True)) - {"_kind"}


def parity(
    view_keys: tuple[str, ...], traits: set[str], js_keys: set[str], not_drawn: tuple[str, ...] = ()
) -> list[str]:
    """Every way the three lists disagree (none when they agree). ``not_drawn``: fields the view
    model declares synced but not drawn by the JS (they must still be fields)."""
    problems = []
    if set(view_keys) != traits:
        problems.append(f"view vs widget traits: {sorted(set(view_keys) ^ traits)}")
    if not set(not_drawn) <= set(view_keys):
        problems.append(f"not-drawn names that are no fields: {sorted(set(not_drawn) - set(view_keys))}")
    drawn = set(view_keys) - set(not_drawn)
    if drawn != js_keys:
        problems.append(f"view vs JS reads: {sorted(drawn ^ js_keys)}")
    return problems


def state_literals(text: str) -> set[str]:
    return {s for s in STATES if re.search(rf"[\"']{s}[\"']", _code(text))}


# -- the rules on the project --------------------------------------------------------------------------
def test_future_view_keys_are_the_widget_traits_and_the_js_reads() -> None:
    assert SNAPSHOT_KEYS == FUTURE_VIEW_KEYS == tuple(FutureView.__annotations__)
    assert len(FUTURE_VIEW_KEYS) == 21  # + "bound" (-o names), "echoed" (a blocking cell's output), "waiting"
    assert (
        parity(FUTURE_VIEW_KEYS, widget_fields(FutureWidget), js_fields(LIB, "F"), FUTURE_FIELDS_NOT_DRAWN)
        == []
    )


def test_panel_view_keys_are_the_widget_traits_and_the_js_reads() -> None:
    assert PANEL_KEYS == PANEL_VIEW_KEYS == tuple(PanelView.__annotations__)
    assert (
        parity(PANEL_VIEW_KEYS, widget_fields(PanelWidget), js_fields(LIB, "P"), PANEL_FIELDS_NOT_DRAWN) == []
    )


def test_map_view_keys_are_the_widget_traits_and_the_js_reads() -> None:
    assert MAP_KEYS == MAP_VIEW_KEYS == tuple(MapView.__annotations__)
    assert parity(MAP_VIEW_KEYS, widget_fields(MapWidget), js_fields(LIB, "M"), MAP_FIELDS_NOT_DRAWN) == []
    assert '"throughput": "throughput"' in _js.LIB_JS and "/*%MAP_FIELDS%*/" not in _js.LIB_JS


def test_map_parity_fails_when_one_side_drifts() -> None:
    drifted = LIB.replace("model.get(M.eta)", "model.get(M.etas)", 1)
    assert drifted != LIB
    assert (
        parity(MAP_VIEW_KEYS, widget_fields(MapWidget), js_fields(drifted, "M"), MAP_FIELDS_NOT_DRAWN) != []
    )
    assert parity(
        (*MAP_VIEW_KEYS, "paused"), widget_fields(MapWidget), js_fields(LIB, "M"), MAP_FIELDS_NOT_DRAWN
    )


def test_the_js_reads_no_field_by_a_quoted_name() -> None:
    base = set(FlameWidget.class_traits(sync=True))
    assert quoted_model_reads(LIB) == {"_kind"}
    assert quoted_model_reads(STUB) == {"_lib"}
    assert (quoted_model_reads(LIB) | quoted_model_reads(STUB)) <= base


def test_the_js_and_css_never_spell_a_state_name() -> None:
    assert state_literals(LIB) == set() and state_literals(CSS) == set() and state_literals(STUB) == set()
    used = set(re.findall(r"(?<![\w.])S\.([A-Z_]+)", _code(LIB))) | set(re.findall(r"%S\.([A-Z_]+)%", CSS))
    assert used and used <= {s.name for s in State}


def test_the_shipped_library_carries_the_python_names() -> None:
    lib = _js.LIB_JS
    assert "/*%" not in lib and "%S." not in lib and "%HASH%" not in lib
    assert '"FAILED": "failed"' in lib and '"cancel_requested": "cancel_requested"' in lib
    assert '"show_instances": "show_instances"' in lib
    assert 'data-state=\\"cancelled\\"' in lib  # the CSS, with its state names filled in
    assert _js.LIB_HASH in _js.STUB_ESM


# -- each rule fails when one side drifts ---------------------------------------------------------------
class DriftedView(TypedDict):
    state: str
    label: str


def test_parity_fails_when_the_view_model_gains_a_field() -> None:
    keys = (*FUTURE_VIEW_KEYS, "queue_position")
    assert parity(keys, widget_fields(FutureWidget), js_fields(LIB, "F"), FUTURE_FIELDS_NOT_DRAWN) != []


def test_parity_fails_when_the_widget_has_another_trait() -> None:
    class Drifted(FutureWidget):
        extra = t.Unicode("").tag(sync=True)

    assert (
        parity(FUTURE_VIEW_KEYS, widget_fields(Drifted), js_fields(LIB, "F"), FUTURE_FIELDS_NOT_DRAWN) != []
    )


def test_parity_fails_when_the_js_reads_a_misspelt_field() -> None:
    drifted = LIB.replace("model.get(F.result_info)", "model.get(F.result_infos)", 1)
    assert drifted != LIB
    assert (
        parity(
            FUTURE_VIEW_KEYS, widget_fields(FutureWidget), js_fields(drifted, "F"), FUTURE_FIELDS_NOT_DRAWN
        )
        != []
    )
    # a field the JS stops drawing must be declared as not drawn
    undrawn = LIB.replace("model.get(F.app)", "undefined")
    assert (
        parity(
            FUTURE_VIEW_KEYS, widget_fields(FutureWidget), js_fields(undrawn, "F"), FUTURE_FIELDS_NOT_DRAWN
        )
        != []
    )
    assert (
        parity(FUTURE_VIEW_KEYS, widget_fields(FutureWidget), js_fields(LIB, "F"), ("run_time", "ghost"))
        != []
    )
    quoted = LIB.replace("model.get(F.label)", 'model.get("label")', 1)
    assert quoted_model_reads(quoted) == {"_kind", "label"}


def test_parity_fails_when_the_js_spells_a_state() -> None:
    drifted = LIB.replace("S.QUEUED", '"queued"', 1)
    assert state_literals(drifted) == {"queued"}


def test_traits_follow_the_declared_fields() -> None:
    cls: Any = with_view_traits(FlameWidget, DriftedView, {"state": "queued"})
    traits = cls.class_traits(sync=True)
    assert traits["state"].default_value == "queued" and isinstance(traits["label"], t.Unicode)
    assert widget_fields(cls) == {"state", "label"}


def test_templating_refuses_an_unknown_slot_or_state() -> None:
    with pytest.raises(KeyError, match="QUEUE_LENGTH"):
        _js.build_lib("const X = /*%QUEUE_LENGTH%*/;", "")
    with pytest.raises(KeyError, match="PAUSED"):
        _js.build_lib("const CSS = /*%CSS%*/;", '[data-state="%S.PAUSED%"] {}')
