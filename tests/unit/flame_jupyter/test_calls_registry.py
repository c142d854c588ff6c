"""calls.apply_records/drain feeding a FutureState, and the registry's counts (no Flame needed)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.calls import apply_records, drain
from flame_jupyter.future_state import FutureState, state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.registry import Registry, ServiceInfo
from flame_jupyter.remote import wire


class ScriptedCall:
    """A call channel whose stream holds the given raw records."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.seen = 0

    def poll(self) -> list[Any]:
        new, self.seen = self.records[self.seen :], len(self.records)
        return new


def test_records_of_each_kind_feed_the_state() -> None:
    fs = FutureState()
    raw = [
        wire.encode_record(wire.Output("stdout", "hello\n")),
        wire.encode_record(wire.Progress("progress", 1, 4, "a quarter", 0.0)),
        wire.encode_record(wire.Output("stderr", "careful\n")),
        wire.encode_record(wire.Display("display", {"text/plain": "shown"})),
        wire.encode_record(wire.Preview("preview", {"text/plain": "9"}, 28)),
        ("a-kind-from-a-newer-executor", 1, 2),  # ignored, not an error
        "not a record",
    ]
    apply_records(fs, raw)
    assert fs.state.value == "running"
    assert fs.output == [("stdout", "hello\n"), ("stderr", "careful\n")]
    assert fs.progress == (1, 4, "a quarter")
    assert fs.displays == [{"text/plain": "shown"}]
    assert fs.preview == {"text/plain": "9", "application/x-flame-size": 28}


def test_drain_reads_the_last_records_once_after_the_end() -> None:
    call = ScriptedCall([wire.encode_record(wire.Output("stdout", "last\n"))])
    fs = FutureState(call=call)
    drain(fs)  # not finished yet: nothing read
    assert fs.output == [] and not fs.streams_closed
    fs.finish(None)
    drain(fs, only_if_observed=True)  # nobody shows it, nothing streamed yet: left for later
    assert fs.output == [] and not fs.streams_closed
    drain(fs)
    assert fs.output == [("stdout", "last\n")] and fs.streams_closed
    call.records.append(wire.encode_record(wire.Output("stdout", "too late\n")))
    drain(fs)
    assert fs.output == [("stdout", "last\n")]


def _future(reg: Registry, session: str = "s1") -> tuple[ObjectFuture, Future]:
    inner: Future = Future()
    f = ObjectFuture(FlamepyFuture(inner), label="x", service="svc", session_id=session)
    reg.add_future(f)
    return f, inner


def test_registry_counts_each_future_once_per_state() -> None:
    reg = Registry()
    reg.add_service(ServiceInfo(name="svc", kind="function", app="a", session_id="s1"))
    futures = [_future(reg) for _ in range(3)]
    info = reg.services["s1"]
    assert info.counts["queued"] == 3 and len(reg.live_futures()) == 3
    state_of(futures[0][0]).running()
    state_of(futures[0][0]).add_output("stdout", "x\n")  # a change that is not a state change
    assert info.counts["running"] == 1 and info.counts["queued"] == 2
    futures[0][1].set_result(b"")
    futures[1][1].set_exception(ValueError("bad"))
    for f, _inner in futures[:2]:
        f.wait(5)
        state_of(f).close_streams()  # later notifications do not count again
    assert info.counts["done"] == 1 and info.counts["failed"] == 1 and info.counts["running"] == 0
    assert info.counts["queued"] == 1 and len(reg.live_futures()) == 1
    assert [r() for r in info.recent_failures] == [futures[1][0]]
    assert set(reg.recent_futures()) == {futures[0][0], futures[1][0]}


def test_registry_close_and_clear() -> None:
    reg = Registry()
    reg.add_service(ServiceInfo(name="svc", kind="function", app="a", session_id="s1"))
    changes: list[int] = []
    reg.subscribe(lambda: changes.append(reg.version))
    assert reg.has_subscribers()
    reg.close_service("s1")
    assert reg.open_services() == [] and changes
    f, inner = _future(reg)
    reg.clear()
    inner.set_result(b"")
    f.wait(5)
    assert reg.live_futures() == [] and reg.services == {}
