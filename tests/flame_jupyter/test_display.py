"""The static fallbacks of a future (text/plain, text/html) and when the widget is chosen.

No browser, no kernel: snapshots of real ObjectFutures in every state, the bundle IPython gets,
nbconvert's rendering of saved outputs with and without widget state, and a real terminal
IPython shell (in a subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import comm
import flamepy
import nbformat
import pytest
from comm.base_comm import BaseComm
from flamepy.core.cache import ObjectRef
from flamepy.core.types import FlameError
from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.future_state import state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.remote.wire import encode_failure
from flame_jupyter.views import (
    HTML_CHARS,
    WIDGET_MIME,
    future_mimebundle,
    future_snapshot,
    output_tail,
    result_info,
    rich_bundle,
    set_widgets,
    snapshot_html,
    snapshot_text,
    trim_bundle,
    widgets_enabled,
)

REPO = Path(__file__).resolve().parents[2]
TRACEBACK = 'Traceback (most recent call last):\n  File "<cell In[4]>", line 3, in explode\n    raise ValueError("boom")\nValueError: boom\n'
FAKE_REF = ObjectRef(endpoint="grpc://127.0.0.1:9", key="app/ssn/x", version=1).encode()


def make_future(label: str = "score(3)") -> tuple[ObjectFuture, Future]:
    inner: Future = Future()
    f = ObjectFuture(FlamepyFuture(inner), label=label, session_id="ssn-1", service="scorer", app="app1")
    f.task_id = "3"
    return f, inner


def failed_future() -> ObjectFuture:
    f, inner = make_future("explode()")
    state_of(f).running()
    state_of(f).add_output("stdout", "checking <input>\n")
    failure = encode_failure("builtins", "ValueError", "boom", TRACEBACK)
    inner.set_exception(FlameError(flamepy.FlameErrorCode.INTERNAL, failure))
    return f


@pytest.fixture(autouse=True)
def automatic_widgets() -> Any:
    set_widgets(None)
    yield
    set_widgets(None)


# -- when the widget is used -------------------------------------------------------------------------------
def test_no_widgets_outside_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not widgets_enabled()  # pytest: no IPython kernel
    set_widgets(True)
    assert widgets_enabled()
    set_widgets(None)
    monkeypatch.setenv("FLAME_JUPYTER_WIDGETS", "0")
    assert not widgets_enabled()


def test_bundle_without_widgets_is_text_and_html() -> None:
    f, _ = make_future()
    bundle = future_mimebundle(f)
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"].startswith("<ObjectFuture 'score(3)' queued")
    assert 'data-state="queued"' in bundle["text/html"]


def test_bundle_with_widgets_carries_the_fallbacks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    class QuietComm(BaseComm):
        def publish_msg(self, *args: Any, **kwargs: Any) -> None:
            pass

    monkeypatch.setattr(comm, "create_comm", lambda **kw: QuietComm(**kw))
    set_widgets(True)
    f = failed_future()
    bundle = future_mimebundle(f)
    assert set(bundle) == {WIDGET_MIME, "text/plain", "text/html"}
    assert "ValueError: boom" in bundle["text/plain"] and "ValueError" in bundle["text/html"]
    assert future_mimebundle(f)[WIDGET_MIME] == bundle[WIDGET_MIME]  # one model per future


# -- snapshots in every state ----------------------------------------------------------------------------------
def test_running_with_progress_and_output() -> None:
    f, _ = make_future()
    state_of(f).running()
    state_of(f).set_progress(3, 10, "batch 3")
    state_of(f).add_output("stdout", "processed 1\nprocessed 2\n")
    state_of(f).add_output("stderr", "warn <x>\n")
    snap = future_snapshot(f)
    assert snap["state"] == "running" and snap["progress"] == [3, 10, "batch 3"]
    text = snapshot_text(snap)
    assert "progress: 3/10 batch 3" in text and "  warn <x>" in text
    html = snapshot_html(snap)
    assert '<progress value="3" max="10">' in html
    assert "warn &lt;x&gt;" in html and "live view needs a Jupyter front end" in html
    json.dumps(snap)  # JSON-ready


def test_done_with_a_remote_preview() -> None:
    f, inner = make_future()
    state_of(f).set_preview(
        {
            "text/plain": "   x\n0  1",
            "text/html": "<table><tr><td>1</td></tr></table>",
            "application/x-flame-size": 5 << 20,
        }
    )
    inner.set_result(FAKE_REF)
    snap = future_snapshot(f)
    assert snap["result"] == {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "   x\n0  1"}
    assert snap["result_info"].startswith("≈ 5.0 MB")
    assert "result: \n   x\n0  1" in snapshot_text(snap)
    assert "<table><tr><td>1</td></tr></table>" in snapshot_html(snap)


def test_done_after_the_user_fetched_the_result() -> None:
    f, inner = make_future()
    inner.set_result(FAKE_REF)
    f._result, f._result_loaded = [1, 2, 3], True
    snap = future_snapshot(f)
    assert snap["result"]["text/plain"] == "[1, 2, 3]" and snap["result_info"] == "list"


def test_failed_shows_type_message_traceback() -> None:
    snap = future_snapshot(failed_future())
    assert (snap["error_type"], snap["error_message"]) == ("ValueError", "boom")
    assert 'File "<cell In[4]>", line 3, in explode' in snap["error_traceback"]
    text = snapshot_text(snap)
    assert "ValueError: boom\nRemote traceback:" in text and "line 3, in explode" in text
    html = snapshot_html(snap)
    assert "<b>ValueError</b>: boom" in html and "checking &lt;input&gt;" in html


def test_cancelled() -> None:
    f, inner = make_future("long()")
    failure = encode_failure("flame_jupyter", "Cancelled", "cancelled by user", "")
    inner.set_exception(FlameError(flamepy.FlameErrorCode.INTERNAL, failure))
    snap = future_snapshot(f)
    assert snap["state"] == "cancelled" and snap["error_type"] == "Cancelled"
    assert "Cancelled: cancelled by user" in snapshot_text(snap)


# -- helpers -----------------------------------------------------------------------------------------------------
def test_output_tail_merges_and_counts() -> None:
    chunks = [("stdout", "a" * 10), ("stdout", "b" * 10), ("stderr", "c" * 10), ("stdout", "d" * 10)]
    kept, dropped = output_tail(chunks, limit=25)
    assert kept == [["stdout", "bbbbb"], ["stderr", "c" * 10], ["stdout", "d" * 10]]
    assert dropped == 15
    assert output_tail(chunks, limit=100) == (
        [["stdout", "a" * 10 + "b" * 10], ["stderr", "c" * 10], ["stdout", "d" * 10]],
        0,
    )


def test_trim_bundle_bounds_sizes_and_types() -> None:
    out = trim_bundle(
        {
            "text/plain": "x" * 10_000,
            "text/html": "<p>" + "y" * (HTML_CHARS + 1),
            "image/png": b"\x89PNG",
            "application/javascript": "alert(1)",
        }
    )
    assert set(out) == {"text/plain", "image/png"}
    assert out["image/png"] == "iVBORw==" and "more characters" in out["text/plain"]
    assert trim_bundle({"text/html": ["<b>", "1</b>"]}) == {"text/html": "<b>1</b>"}
    assert trim_bundle({"application/x-custom": 1}) == {"text/plain": "(application/x-custom)"}


def test_rich_bundle_uses_rich_reprs() -> None:
    pd = pytest.importorskip("pandas")
    bundle = rich_bundle(pd.DataFrame({"x": [1]}))
    assert "<table" in bundle["text/html"] and "x" in bundle["text/plain"]

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("nope")

    assert "unrepresentable Broken" in rich_bundle(Broken())["text/plain"]


def test_result_info() -> None:
    assert result_info(
        {"application/vnd.flame.result-info+json": {"type": "DataFrame", "size": 2048}}
    ).startswith("DataFrame · 2.0 KB")
    assert result_info({"text/plain": "1"}) == ""


# -- where the fallbacks are read ----------------------------------------------------------------------------
def _notebook_with(bundle: dict[str, Any], widget_state: dict[str, Any] | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("f")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=bundle, execution_count=1)]
    cell.execution_count = 1
    nb.cells.append(cell)
    if widget_state is not None:
        nb.metadata["widgets"] = {
            "application/vnd.jupyter.widget-state+json": {
                "version_major": 2,
                "version_minor": 0,
                "state": widget_state,
            }
        }
    return nb


def test_nbconvert_shows_the_html_snapshot_without_widget_state() -> None:
    nbconvert = pytest.importorskip("nbconvert")
    f = failed_future()
    bundle = {
        WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": "abc"},
        **future_mimebundle(f),
    }
    html, _ = nbconvert.HTMLExporter().from_notebook_node(_notebook_with(bundle, None))
    assert "<b>ValueError</b>: boom" in html and "line 3, in explode" in html
    md, _ = nbconvert.MarkdownExporter().from_notebook_node(_notebook_with(bundle, None))
    assert 'data-state="failed"' in md and "ValueError: boom" in md  # markdown keeps the HTML snapshot


def test_nbconvert_uses_the_widget_when_its_state_was_saved() -> None:
    nbconvert = pytest.importorskip("nbconvert")
    f = failed_future()
    bundle = {
        WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": "abc"},
        **future_mimebundle(f),
    }
    state = {
        "abc": {
            "model_name": "AnyModel",
            "model_module": "anywidget",
            "model_module_version": "~0.11.*",
            "state": {"state": "failed"},
        }
    }
    html, _ = nbconvert.HTMLExporter().from_notebook_node(_notebook_with(bundle, state))
    assert "application/vnd.jupyter.widget-view+json" in html and '"model_id": "abc"' in html


def test_terminal_ipython_shows_text() -> None:
    script = textwrap.dedent(
        """
        from concurrent.futures import Future
        from flamepy.runner.runner import ObjectFuture as FP
        from IPython.terminal.interactiveshell import TerminalInteractiveShell
        from flame_jupyter.views import widgets_enabled
        from flame_jupyter.futures import ObjectFuture
        from flame_jupyter.future_state import state_of

        shell = TerminalInteractiveShell.instance()
        f = ObjectFuture(FP(Future()), label="score(3)", session_id="s1", service="scorer")
        state_of(f).running()
        state_of(f).set_progress(1, 4, "")
        data, _ = shell.display_formatter.format(f)
        assert not widgets_enabled()
        assert "application/vnd.jupyter.widget-view+json" not in data
        print(data["text/plain"])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("<ObjectFuture 'score(3)' running") and "progress: 1/4" in proc.stdout
