"""The display's view models and static renderings, on real ObjectFutures (pure: no kernel, no Flame)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.display import protocol
from flame_jupyter.display.bundles import human_size, result_info, trim_bundle
from flame_jupyter.display.future_static import snapshot_html, snapshot_text
from flame_jupyter.display.future_view import FUTURE_VIEW_KEYS, future_view, output_tail
from flame_jupyter.display.panel_static import PanelSnapshot, status_html, status_text
from flame_jupyter.display.panel_status import kernel_status, merge_status
from flame_jupyter.display.panel_view import PANEL_VIEW_KEYS
from flame_jupyter.display.states import STATES, TERMINAL_STATES
from flame_jupyter.errors import CancelledError
from flame_jupyter.future_state import FutureState
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.registry import Registry, ServiceInfo
from flame_jupyter.remote.wire import TERMINAL, State


def make(label: str = "score(3)") -> tuple[ObjectFuture, FutureState, Future]:
    inner: Future = Future()
    fs = FutureState()
    f = ObjectFuture(
        FlamepyFuture(inner), label=label, service="scorer", app="app1", session_id="s1", state=fs
    )
    f.task_id = "7"
    return f, fs, inner


def protocol_members() -> set[str]:
    cls = protocol.ViewedFuture
    return set(cls.__annotations__) | {n for n in vars(cls) if not n.startswith("_")}


def test_object_future_has_every_member_the_display_reads() -> None:
    f, _fs, _inner = make()
    members = protocol_members()
    assert {"known_state", "output", "progress", "add_listener", "remove_listener", "done"} <= members
    assert [m for m in sorted(members) if not hasattr(f, m)] == []


def test_states_come_from_the_wire() -> None:
    assert STATES == tuple(s.value for s in State)
    assert set(TERMINAL_STATES) == {s.value for s in TERMINAL} and STATES[0] == "queued"


def test_a_running_future_view_and_its_static_renderings() -> None:
    f, fs, _inner = make()
    fs.running()
    fs.add_output("stdout", "step 1\n")
    fs.add_output("stdout", "step 2\n")
    fs.add_output("stderr", "<careful>\n")
    fs.set_progress(2, 4, "half")
    view = future_view(f)
    assert tuple(view) == FUTURE_VIEW_KEYS
    assert view["state"] == "running" and view["task_id"] == "7" and view["progress"] == [2, 4, "half"]
    assert view["output"] == [["stdout", "step 1\nstep 2\n"], ["stderr", "<careful>\n"]]
    assert view["output_dropped"] == 0 and view["result"] == {} and view["run_time"] is not None
    text = snapshot_text(view)
    assert text.startswith("<ObjectFuture 'score(3)' running") and "progress: 2/4 half" in text
    page = snapshot_html(view)
    assert 'data-state="running"' in page and "&lt;careful&gt;" in page and "snapshot at" in page
    assert '<progress value="2" max="4">' in page and "service scorer" in page


def test_a_done_future_shows_its_remote_preview() -> None:
    f, fs, inner = make()
    fs.set_preview({"text/plain": "9", "text/html": "<b>9</b>", "application/x-flame-size": 28})
    inner.set_result(b"unused")
    fs.finish(None)
    view = future_view(f)
    assert view["state"] == "done" and view["result"] == {"text/html": "<b>9</b>", "text/plain": "9"}
    assert view["result_info"] == "≈ 28 B · preview made remotely; .get() fetches the result"
    assert "result: 9" in snapshot_text(view)
    page = snapshot_html(view)
    assert "<div><b>9</b></div>" in page and "snapshot at" not in page


def test_a_cancelled_future_shows_why() -> None:
    f, fs, _inner = make()
    fs.finish(CancelledError("cancelled by user"))
    view = future_view(f)
    assert view["state"] == "cancelled"
    assert (view["error_type"], view["error_message"]) == ("Cancelled", "cancelled by user")
    assert "Cancelled: cancelled by user" in snapshot_text(view)
    assert "<b>Cancelled</b>: cancelled by user" in snapshot_html(view)


def test_output_tail_keeps_the_last_characters_and_counts_the_rest() -> None:
    chunks = [("stdout", "a" * 10), ("stdout", "b" * 10), ("stderr", "c" * 10)]
    assert output_tail(chunks, limit=15) == ([["stdout", "bbbbb"], ["stderr", "c" * 10]], 15)
    assert output_tail([], limit=5) == ([], 0)


def test_bundles_are_trimmed_and_sized() -> None:
    assert trim_bundle({"text/plain": ["a", "b"], "application/x-unknown": 1}) == {"text/plain": "ab"}
    assert trim_bundle({"application/x-unknown": 1}) == {"text/plain": "(application/x-unknown)"}
    assert trim_bundle({"text/html": "x" * 300_000}) == {"text/plain": "(text/html)"}
    assert human_size(1536) == "1.5 KB" and human_size(12) == "12 B"
    info = {"application/vnd.flame.result-info+json": {"type": "DataFrame", "size": 12_288}}
    assert result_info(info) == "DataFrame · 12.0 KB · preview made remotely; .get() fetches the result"


def test_panel_view_from_a_registry_and_its_static_renderings() -> None:
    reg = Registry()
    reg.add_service(ServiceInfo(name="scorer", kind="service", app="app1", session_id="s1"))
    f, fs, _inner = make()
    reg.add_future(f)
    fs.running()
    kernel = kernel_status(reg)
    assert kernel["live"] == 1 and kernel["totals"] == dict.fromkeys(STATES, 0) | {"running": 1}
    flame = {
        "runtime": "embedded Flame",
        "sessions": {
            "s1": {"state": "open", "app": "app1", "pending": 0, "running": 1, "succeed": 2, "failed": 0}
        },
        "instances": [{"id": "i-1", "state": "bound", "session_id": "s1"}],
        "show_instances": True,
        "flame_error": "",
    }
    data = merge_status(kernel, flame)
    assert set(PANEL_VIEW_KEYS) <= set(data)
    assert data["services"][0]["flame"] == "0 pending · 1 running · 2 ok · 0 failed"
    text = status_text(data)
    assert text.splitlines()[0] == "Flame: embedded Flame"
    assert "queued 0  running 1  done 0  failed 0  cancelled 0" in text and "i-1" in text
    page = status_html(data)
    assert "<th>cancelled</th>" in page and "<td>scorer</td><td>s1</td>" in page and "<td>i-1</td>" in page
    snap: Any = PanelSnapshot(data)
    assert repr(snap) == text and snap._repr_mimebundle_()["text/html"] == page


def test_an_empty_panel_says_so() -> None:
    data = merge_status(kernel_status(Registry()), {"runtime": "nowhere"})
    assert "Nothing has run on Flame from this kernel yet." in status_text(data)
    assert "Nothing has run on Flame from this kernel yet." in status_html(data)
