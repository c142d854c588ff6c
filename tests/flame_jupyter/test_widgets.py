"""Future widget, status panel and update pump, against a recording comm (no browser, no kernel).

Every comm message the widgets send is recorded (type, model, JSON data, sending thread, pump
tick), so the tests assert what a front end would receive: state transitions, batching
(``hold_sync``: one message per flush), the rate bound (at most ``budget`` messages per tick),
thread discipline (updates only from the pump thread), and that a finished future costs nothing.
Futures are real ``ObjectFuture``s; results live in the session's embedded runtime where needed.
"""

from __future__ import annotations

import gc
import json
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import comm
import flamepy
import pytest
from comm.base_comm import BaseComm
from flamepy.core.cache import ObjectRef
from flamepy.core.types import FlameError
from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.future_state import FutureState, state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.registry import Registry, ServiceInfo
from flame_jupyter.remote.wire import encode_failure
from flame_jupyter.views import WIDGET_MIME
from flame_jupyter.widgets import future_widget as fw_module
from flame_jupyter.widgets._base import _reset_lib_carrier
from flame_jupyter.widgets._js import LIB_JS, STUB_ESM
from flame_jupyter.widgets.future_widget import FutureWidget, widget_for
from flame_jupyter.widgets.panel_widget import PanelWidget
from flame_jupyter.widgets.pump import Pump, pump, reset_pump

TRACEBACK = "Traceback (most recent call last):\n  File \"<cell In[2]>\", line 2, in f\n    raise ValueError('boom')\nValueError: boom\n"
FAKE_REF = ObjectRef(endpoint="grpc://127.0.0.1:9", key="app/ssn/x", version=1).encode()


# -- the recording comm ----------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []

    def add(self, **msg: Any) -> None:
        with self.lock:
            self.messages.append(msg)

    def of(self, comm_id: str, method: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            msgs = [m for m in self.messages if m["comm_id"] == comm_id]
        if method is not None:
            msgs = [m for m in msgs if (m["data"] or {}).get("method") == method]
        return msgs

    def updates(self, comm_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            msgs = list(self.messages)
        return [
            m
            for m in msgs
            if m["type"] == "comm_msg"
            and (m["data"] or {}).get("method") == "update"
            and (comm_id is None or m["comm_id"] == comm_id)
        ]

    def opens(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["type"] == "comm_open"]

    def state(self, comm_id: str) -> dict[str, Any]:
        """The front end's view of a model: its open state plus every update, in order."""
        state: dict[str, Any] = {}
        for m in self.of(comm_id):
            if m["type"] == "comm_open" or (m["data"] or {}).get("method") == "update":
                state.update(m["data"]["state"])
        return state

    def history(self, comm_id: str, key: str) -> list[Any]:
        values = [self.of(comm_id)[0]["data"]["state"].get(key)]
        for m in self.updates(comm_id):
            if key in m["data"]["state"]:
                values.append(m["data"]["state"][key])
        return values


class RecordingComm(BaseComm):
    recorder: Recorder

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        current = pump()
        self.recorder.add(
            type=msg_type,
            comm_id=self.comm_id,
            data=json.loads(json.dumps(data)),  # what would go on the wire (must be JSON)
            size=len(json.dumps(data)),
            thread=threading.current_thread().name,
            tick=current.ticks,
        )


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorder = Recorder()

    def create_comm(**kwargs: Any) -> RecordingComm:
        c = RecordingComm.__new__(RecordingComm)
        c.recorder = recorder
        RecordingComm.__init__(c, **kwargs)
        return c

    monkeypatch.setattr(comm, "create_comm", create_comm)
    _reset_lib_carrier()
    reset_pump(Pump(interval=0.02, max_rate=5000))
    try:
        yield recorder
    finally:
        reset_pump()


def front_end_sends(widget: Any, content: dict[str, Any]) -> None:
    """A button click in the view: a custom comm message from the front end."""
    widget.comm.handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


class FakeCall:
    """The per-call channel: cancel fails the task the way Flame reports a cancellation."""

    def __init__(self, inner: Future) -> None:
        self.inner = inner
        self.cancels = 0

    def request_cancel(self) -> None:
        self.cancels += 1
        if not self.inner.done():
            failure = encode_failure("flame_jupyter", "Cancelled", "cancelled by user", "")
            self.inner.set_exception(FlameError(flamepy.FlameErrorCode.INTERNAL, failure))


def make_future(
    label: str = "score(3)", *, call: bool = False, session: str = "ssn-1", task: str = "7"
) -> tuple[ObjectFuture, Future]:
    inner: Future = Future()
    state = FutureState(call=FakeCall(inner) if call else None)
    f = ObjectFuture(
        FlamepyFuture(inner), label=label, session_id=session, service="scorer", app="app1", state=state
    )
    f.task_id = task
    return f, inner


def fail(inner: Future, message: str = "boom") -> None:
    failure = encode_failure("builtins", "ValueError", message, TRACEBACK)
    inner.set_exception(FlameError(flamepy.FlameErrorCode.INTERNAL, failure))


def settle() -> None:
    assert pump().wait_idle(30)


# -- one model, the library once ---------------------------------------------------------------------------
def test_one_comm_model_per_future_and_the_view_code_travels_once(rec: Recorder) -> None:
    futures = [make_future(f"f{i}")[0] for i in range(5)]
    widgets = [FutureWidget(f) for f in futures]
    opens = rec.opens()
    assert len(opens) == 5  # no Layout models: exactly one comm per future
    states = [o["data"]["state"] for o in opens]
    assert states[0]["_lib"] == LIB_JS and all(s["_lib"] == "" for s in states[1:])
    assert all(s["_esm"] == STUB_ESM and s["layout"] is None for s in states)
    assert all(s["_model_name"] == "AnyModel" and s["_view_name"] == "AnyView" for s in states)
    assert len(STUB_ESM) < 2500 and max(o["size"] for o in opens[1:]) < 4000  # per-future cost stays small
    # a view that finds no library asks the kernel for it
    front_end_sends(widgets[3], {"kind": "lib"})
    custom = rec.of(widgets[3].model_id, "custom")
    assert custom and custom[-1]["data"]["content"] == {"kind": "lib", "code": LIB_JS}


# -- state transitions ---------------------------------------------------------------------------------------
def test_queued_running_progress_output_done(rec: Recorder) -> None:
    f, inner = make_future()
    w = FutureWidget(f)
    mid = w.model_id
    settle()
    assert rec.state(mid)["state"] == "queued"
    state_of(f).running()
    settle()
    assert rec.state(mid)["state"] == "running"
    for i in range(1, 4):
        state_of(f).add_output("stdout", f"step {i}\n")
        state_of(f).set_progress(i, 3, f"step {i}")
        settle()
        assert rec.state(mid)["progress"] == [i, 3, f"step {i}"]
    state_of(f).add_output("stderr", "careful\n")
    state_of(f).set_preview({"text/plain": "9", "text/html": "<b>9</b>", "application/x-flame-size": 28})
    inner.set_result(FAKE_REF)
    settle()
    final = rec.state(mid)
    assert final["state"] == "done"
    assert final["output"] == [["stdout", "step 1\nstep 2\nstep 3\n"], ["stderr", "careful\n"]]
    assert final["result"] == {"text/html": "<b>9</b>", "text/plain": "9"}
    assert "28 B" in final["result_info"]
    assert final["error_type"] == "" and final["cancel_requested"] is False
    assert final["label"] == "score(3)" and final["session_id"] == "ssn-1" and final["task_id"] == "7"
    assert rec.history(mid, "state") == ["queued", "running", "done"]
    # every update came from the pump thread: one writer, never the caller's thread
    assert {m["thread"] for m in rec.updates(mid)} == {"flame-jupyter-pump"}


def test_failure_shows_remote_type_message_and_traceback(rec: Recorder) -> None:
    f, inner = make_future("explode()")
    w = FutureWidget(f)
    state_of(f).running()
    fail(inner, "boom")
    settle()
    final = rec.state(w.model_id)
    assert final["state"] == "failed"
    assert final["error_type"] == "ValueError"
    assert final["error_message"] == "boom"
    assert 'File "<cell In[2]>", line 2, in f' in final["error_traceback"]
    assert not w.watching


def test_cancel_button_cancels_the_task(rec: Recorder) -> None:
    f, inner = make_future("long_job()", call=True)
    w = FutureWidget(f)
    state_of(f).running()
    settle()
    front_end_sends(w, {"kind": "cancel"})
    settle()
    assert state_of(f).call.cancels == 1
    final = rec.state(w.model_id)
    assert final["state"] == "cancelled"
    assert final["error_type"] == "Cancelled" and final["error_message"] == "cancelled by user"
    front_end_sends(w, {"kind": "cancel"})  # a second click on a finished future does nothing
    assert state_of(f).call.cancels == 1


def test_one_message_per_flush_with_hold_sync(rec: Recorder) -> None:
    f, inner = make_future()
    w = FutureWidget(f)
    settle()
    before = len(rec.updates(w.model_id))
    gate = threading.Event()

    class Blocker:
        def flush(self) -> None:
            gate.wait(10)

    pump().request(Blocker(), urgent=True)  # hold the pump while the future changes a lot
    requests = pump().requests
    state_of(f).running()
    for i in range(50):
        state_of(f).add_output("stdout", f"{i}\n")
        state_of(f).set_progress(i, 50, "")
    assert pump().requests - requests == 1  # an already dirty widget does not even touch the pump
    gate.set()
    settle()
    new = rec.updates(w.model_id)[before:]
    assert len(new) == 1  # 101 changes, one message
    assert {"state", "output", "progress", "elapsed"} <= set(new[0]["data"]["state"])


# -- scale -------------------------------------------------------------------------------------------------------
def test_2000_futures_are_coalesced_and_rate_bounded(rec: Recorder) -> None:
    p = reset_pump(Pump(interval=0.02, max_rate=2500))  # budget: 50 messages per tick
    futures = [make_future(f"f{i}")[0] for i in range(2000)]
    inners = [f._future for f in futures]
    widgets = [FutureWidget(f) for f in futures]
    settle()
    gate = threading.Event()

    class Blocker:
        def flush(self) -> None:
            gate.wait(30)

    p.request(Blocker(), urgent=True)

    def drive(part: list[int]) -> None:
        for i in part:
            f = futures[i]
            state_of(f).running()
            for k in range(1, 11):
                state_of(f).add_output("stdout", f"line {k}\n")
                state_of(f).set_progress(k, 10, "")
            state_of(f).set_preview({"text/plain": str(i)})
            inners[i].set_result(FAKE_REF)

    threads = [threading.Thread(target=drive, args=(list(range(j, 2000, 8)),)) for j in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    events = 2000 * 23
    ticks_before = p.ticks
    gate.set()
    settle()
    updates = [m for m in rec.updates() if m["tick"] >= ticks_before]
    assert len(updates) == 2000 < events / 10  # one message per future for 23 changes each
    per_tick: dict[int, int] = defaultdict(int)
    for m in updates:
        per_tick[m["tick"]] += 1
    assert max(per_tick.values()) <= p.budget == 50  # the rate bound: budget messages per tick
    assert len(per_tick) >= 2000 // p.budget
    assert {m["thread"] for m in updates} == {"flame-jupyter-pump"}
    states = {w.model_id: rec.state(w.model_id) for w in widgets}
    assert all(s["state"] == "done" and s["progress"] == [10, 10, ""] for s in states.values())
    # and then they cost nothing: no listener, nothing pending, no message on a late change
    assert not any(w.watching for w in widgets)
    assert all(not state_of(f).listeners() for f in futures)
    assert p.idle()
    n = len(rec.messages)
    state_of(futures[0]).add_output("stdout", "late\n")
    settle()
    assert len(rec.messages) == n


def test_a_finished_future_is_dropped_by_its_widget(rec: Recorder) -> None:
    f, inner = make_future()
    w = FutureWidget(f)
    state_of(f).set_preview({"text/plain": "1"})
    inner.set_result(FAKE_REF)
    settle()
    assert not w.watching and w.future is None and not state_of(f).listeners()
    ref = weakref.ref(f)
    del f, inner
    gc.collect()
    assert ref() is None  # the widget holds no reference: the user's drop frees it
    assert rec.state(w.model_id)["state"] == "done"  # the view keeps the final state


def test_late_output_after_done_is_shown_then_the_widget_settles(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fw_module, "SETTLE_GRACE", 0.3)
    f, inner = make_future(call=True)  # a call channel: records may trail the end of the task
    w = FutureWidget(f)
    state_of(f).running()
    state_of(f).set_preview({"text/plain": "1"})
    inner.set_result(FAKE_REF)
    settle()
    assert w.watching  # still listening for the stream's last records
    state_of(f).add_output("stdout", "last words\n")
    settle()
    assert rec.state(w.model_id)["output"] == [["stdout", "last words\n"]]
    for _ in range(200):  # bounded: the delayed settle flush comes from the pump
        if not w.watching:
            break
        threading.Event().wait(0.05)
    assert not w.watching and not state_of(f).listeners()


def test_streams_closed_settles_at_once(rec: Recorder) -> None:
    f, inner = make_future(call=True)
    state_of(f).close_streams()  # what the SDK's tracker does after its last read of the stream
    w = FutureWidget(f)
    state_of(f).set_preview({"text/plain": "1"})
    inner.set_result(FAKE_REF)
    settle()
    assert not w.watching


def test_redisplay_reuses_the_model_and_catches_up(rec: Recorder) -> None:
    f, inner = make_future()
    w = widget_for(f)
    assert widget_for(f) is w
    state_of(f).set_preview({"text/plain": "1"})
    inner.set_result(FAKE_REF)
    settle()
    assert not w.watching
    state_of(f).add_display({"text/plain": "a display that arrived later"})
    assert widget_for(f) is w  # shown again: same model, watching again until settled
    settle()
    assert rec.state(w.model_id)["displays"] == [{"text/plain": "a display that arrived later"}]
    assert not w.watching
    assert len(rec.opens()) == 1


def test_output_tail_is_bounded(rec: Recorder) -> None:
    f, inner = make_future()
    w = FutureWidget(f)
    state_of(f).running()
    for i in range(5000):
        state_of(f).add_output("stdout", f"line {i:05d}\n")
    settle()
    st = rec.state(w.model_id)
    text = "".join(t for _, t in st["output"])
    assert len(text) <= 6000 and text.endswith("line 04999\n")
    assert st["output_dropped"] == 5000 * 11 - len(text)


# -- previews ----------------------------------------------------------------------------------------------------
def _finished_with(rec: Recorder, ref: Any) -> tuple[Any, dict[str, Any]]:
    """A widget's future finishing with the cached object ``ref``; wait (bounded) until the
    widget settled and return the future and the widget's state."""
    f, inner = make_future()
    w = FutureWidget(f)
    inner.set_result(ref.encode())
    for _ in range(400):
        settle()
        if not w.watching:
            break
        threading.Event().wait(0.05)
    return f, rec.state(w.model_id)


def test_small_result_is_previewed_from_the_cache(rec: Recorder, runtime: Any) -> None:
    ref = flamepy.core.put_object("widgets/ssn-preview", {"answer": 42})
    f, st = _finished_with(rec, ref)
    assert st["result"]["text/plain"] == "{'answer': 42}"
    assert st["result_info"].startswith("dict · ") and st["result_info"].endswith(" B")
    assert f._result_loaded  # the user's own get() is now free


def test_dataframe_result_preview_is_html(rec: Recorder, runtime: Any) -> None:
    pd = pytest.importorskip("pandas")
    ref = flamepy.core.put_object("widgets/ssn-preview", pd.DataFrame({"x": [1, 2], "y": [3, 4]}))
    f, st = _finished_with(rec, ref)
    assert "<table" in st["result"]["text/html"] and st["result_info"].startswith("DataFrame")


def test_large_result_is_not_downloaded_for_a_preview(rec: Recorder, runtime: Any) -> None:
    ref = flamepy.core.put_object("widgets/ssn-preview", b"x" * (3 << 20))
    f, st = _finished_with(rec, ref)
    assert st["result"] == {} and "larger than 1.0 MB" in st["result_info"]
    assert not f._result_loaded


def test_remote_preview_is_used_without_fetching(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fetch(*_a: Any, **_k: Any) -> None:
        raise AssertionError("must not fetch when the remote side sent a preview")

    monkeypatch.setattr(fw_module, "fetch_preview", no_fetch)
    f, inner = make_future()
    w = FutureWidget(f)
    state_of(f).set_preview({"text/plain": "array([...])", "application/x-flame-size": 3 << 20})
    inner.set_result(FAKE_REF)
    settle()
    st = rec.state(w.model_id)
    assert st["result"] == {"text/plain": "array([...])"}
    assert st["result_info"].startswith("≈ 3.0 MB")


# -- fallbacks carried by the widget ---------------------------------------------------------------------------
def test_widget_bundle_carries_text_and_html(rec: Recorder) -> None:
    f, inner = make_future("explode()")
    w = FutureWidget(f)
    state_of(f).add_output("stdout", "<script>alert(1)</script>\n")
    fail(inner)
    settle()
    bundle = w._repr_mimebundle_()
    assert bundle[WIDGET_MIME]["model_id"] == w.model_id
    assert "failed" in bundle["text/plain"] and "ValueError: boom" in bundle["text/plain"]
    assert "line 2, in f" in bundle["text/plain"]
    assert "&lt;script&gt;" in bundle["text/html"] and "<script>" not in bundle["text/html"]
    assert "ValueError" in bundle["text/html"]


# -- the panel ---------------------------------------------------------------------------------------------------
class Handle:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def panel_fixture() -> tuple[Registry, Handle, dict[str, tuple[ObjectFuture, Future]]]:
    reg = Registry()
    handle = Handle()
    reg.add_service(
        ServiceInfo(name="scorer", kind="function", app="app1", session_id="ssn-1", handle=handle)
    )
    made = {}
    for name in ("ok", "bad", "live", "queued"):
        f, inner = make_future(name, call=True)
        reg.add_future(f)
        made[name] = (f, inner)
    state_of(made["ok"][0]).set_preview({"text/plain": "1"})
    made["ok"][1].set_result(FAKE_REF)
    state_of(made["bad"][0]).running()
    fail(made["bad"][1], "bad input 7")
    state_of(made["live"][0]).running()
    return reg, handle, made


def test_panel_counts_failures_and_buttons(rec: Recorder) -> None:
    reg, handle, made = panel_fixture()
    panel = PanelWidget(reg=reg, poll_flame=False)
    settle()
    st = rec.state(panel.model_id)
    assert st["_lib"] == LIB_JS  # the panel always carries the view code
    row = next(r for r in st["services"] if r["name"] == "scorer")
    assert row["counts"] == {"queued": 1, "running": 1, "done": 1, "failed": 1, "cancelled": 0}
    assert st["totals"] == row["counts"] and st["live"] == 2
    assert row["throughput"] > 0
    (failure,) = st["failures"]
    assert failure["label"] == "bad" and failure["error_type"] == "ValueError"
    assert failure["message"] == "bad input 7" and "line 2, in f" in failure["traceback"]

    front_end_sends(panel, {"kind": "cancel_tasks", "session_id": "ssn-1"})
    settle()
    assert made["live"][0].state == "cancelled" and made["queued"][0].state == "cancelled"
    assert state_of(made["ok"][0]).call.cancels == 0  # finished futures are left alone
    for _ in range(100):
        settle()
        row = next(r for r in rec.state(panel.model_id)["services"] if r["name"] == "scorer")
        if row["counts"]["cancelled"] == 2:
            break
        threading.Event().wait(0.05)
    assert row["counts"] == {"queued": 0, "running": 0, "done": 1, "failed": 1, "cancelled": 2}

    front_end_sends(panel, {"kind": "close_session", "session_id": "ssn-1"})
    for _ in range(100):
        settle()
        row = next(r for r in rec.state(panel.model_id)["services"] if r["name"] == "scorer")
        if row["closed"]:
            break
        threading.Event().wait(0.05)
    assert row["closed"] and handle.closed == 1
    bundle = panel._repr_mimebundle_()
    assert "scorer" in bundle["text/plain"] and "ValueError" in bundle["text/html"] and WIDGET_MIME in bundle
    panel.close()


def test_panel_goes_quiet_when_nothing_runs(rec: Recorder) -> None:
    reg, _handle, made = panel_fixture()
    for name in ("live", "queued"):
        made[name][0].cancel()
    for info in reg.services.values():
        info.finished_times.clear()  # as if the last task ended long ago (throughput 0)
    panel = PanelWidget(reg=reg, poll_flame=False, refresh_interval=0.05)
    settle()
    for _ in range(40):  # bounded: the panel may book one more refresh, then nothing
        if pump().pending() == 0:
            break
        threading.Event().wait(0.05)
    assert pump().pending() == 0 and pump().idle()
    flushes = panel.flushes
    threading.Event().wait(0.3)
    assert panel.flushes == flushes  # no timer, no polling while idle
    panel.close()


def test_panel_refreshes_while_work_runs(rec: Recorder) -> None:
    reg, _handle, made = panel_fixture()
    panel = PanelWidget(reg=reg, poll_flame=False, refresh_interval=0.05)
    settle()
    assert pump().pending() >= 1  # a live future: the next refresh is booked
    for name in ("live", "queued"):
        made[name][0].cancel()
    panel.close()
    assert pump().pending() == 0


def test_panel_shows_flame_sessions_and_embedded_instances(
    rec: Recorder, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = flamepy.create_session("flmping", min_instances=1)
    try:
        reg = Registry()
        reg.add_service(ServiceInfo(name="pinger", kind="function", app="flmping", session_id=session.id))
        panel = PanelWidget(reg=reg, poll_interval=0.05)
        st: dict[str, Any] = {}
        for _ in range(600):  # bounded (30 s): the instance starts in its own process
            front_end_sends(panel, {"kind": "refresh"})
            settle()
            st = rec.state(panel.model_id)
            if any(i["session_id"] == session.id and i["state"] == "bound" for i in st.get("instances", [])):
                break
            threading.Event().wait(0.05)
        assert st["show_instances"] is True and st["flame_error"] == ""
        assert any(i["session_id"] == session.id and i["state"] == "bound" for i in st["instances"]), st[
            "instances"
        ]
        row = next(r for r in st["services"] if r["session_id"] == session.id)
        assert "pending" in row["flame"] and not row["closed"]
        front_end_sends(
            panel, {"kind": "close_session", "session_id": session.id}
        )  # no handle: flamepy closes it
        for _ in range(200):
            settle()
            row = next(r for r in rec.state(panel.model_id)["services"] if r["session_id"] == session.id)
            if row["closed"]:
                break
            threading.Event().wait(0.05)
        assert row["closed"]
        assert {s.id: s.state.name for s in flamepy.list_sessions()}[session.id] == "CLOSED"
        panel.close()
    finally:
        try:
            flamepy.close_session(session.id)
        except Exception:  # noqa: BLE001 - already closed
            pass
