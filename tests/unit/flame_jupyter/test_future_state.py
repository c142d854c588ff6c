"""FutureState, the one mutator of a call's state, and ObjectFuture, its read-only face."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.errors import CancelledError
from flame_jupyter.future_state import FutureState, state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.remote.wire import TERMINAL, State


def make() -> tuple[ObjectFuture, FutureState, Future]:
    inner: Future = Future()
    fs = FutureState()
    return ObjectFuture(FlamepyFuture(inner), label="t", state=fs), fs, inner


def test_transitions_queued_running_done_and_never_back() -> None:
    f, fs, inner = make()
    seen: list[str] = []
    f.add_listener(lambda fut: seen.append(fut.known_state))
    assert f.known_state == "queued" and f.started_at is None
    fs.running(at=100.0)
    fs.running(at=200.0)  # once only
    assert f.known_state == "running" and f.started_at == 100.0
    fs.finish(None)
    fs.running()  # a late "running" report cannot undo the end
    fs.finish(ValueError("late"))  # nor a second end
    assert f.known_state == "done" and f.error is None and f.finished_at is not None
    assert seen == ["running", "done"]
    assert state_of(f) is fs


def test_an_error_that_cannot_be_decoded_still_ends_failed() -> None:
    f, fs, inner = make()

    def broken_decoder(exc: BaseException) -> BaseException:
        raise TypeError("__init__() missing 1 required positional argument: 'doc'")

    fs.finish(RuntimeError("raw flame error"), broken_decoder)
    assert f.known_state == "failed" and f.done() is False  # the state is true even before the inner end
    assert isinstance(f.error, RuntimeError) and "raw flame error" in str(f.error)
    assert isinstance(f.error.__cause__, TypeError)


def test_a_failure_after_a_cancel_request_is_the_cancel() -> None:
    f, fs, inner = make()
    fs.request_cancel()
    fs.finish(RuntimeError("instance ended"))
    assert f.known_state == "cancelled" and isinstance(f.error, CancelledError)
    assert f.cancel_requested


def test_inner_future_end_drives_the_state_and_get_raises_the_decoded_error() -> None:
    f, fs, inner = make()
    inner.set_exception(ValueError("plain"))
    assert f.wait(5)
    assert f.known_state == "failed" and f.state == "failed"
    try:
        f.get(5)
    except Exception as e:  # noqa: BLE001 - the type depends on the decoder
        assert "plain" in str(e)
    else:
        raise AssertionError("get() returned for a failed call")


def test_finish_hooks_run_once_before_wait_returns_even_when_added_late() -> None:
    f, fs, inner = make()
    ran: list[str] = []
    fs.add_finish_hook(lambda fut: ran.append("early"))
    inner.set_exception(ValueError("x"))
    assert f.wait(5)
    fs.add_finish_hook(lambda fut: ran.append("late"))  # already finished: runs at once
    f.wait(5)
    assert ran == ["early", "late"]


def test_concurrent_reports_end_in_one_terminal_state() -> None:
    for _ in range(50):  # bounded: 50 races of 4 threads
        f, fs, inner = make()
        ends: list[str] = []

        def on_change(fut: ObjectFuture, ends: list[str] = ends) -> None:
            if fut.known_state in TERMINAL:
                ends.append(fut.known_state)

        f.add_listener(on_change)
        threads = [
            threading.Thread(target=fs.running),
            threading.Thread(target=fs.finish, args=(None,)),
            threading.Thread(target=fs.finish, args=(ValueError("second"),)),
            threading.Thread(target=fs.running),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        # listeners read the current state: a late "running" notification may see the end again
        assert fs.state.terminal and ends and set(ends) == {fs.state.value}


def test_the_future_offers_only_the_users_api() -> None:
    public = {n for n in dir(ObjectFuture) if not n.startswith("_")}
    assert not {n for n in public if n.startswith(("mark_", "record_"))}
    assert {"get", "wait", "cancel", "state", "output", "progress", "error", "ref"} <= public
    assert "read_remaining_output" not in public and "call" not in public
    assert [s.value for s in State] == ["queued", "running", "done", "failed", "cancelled"]
