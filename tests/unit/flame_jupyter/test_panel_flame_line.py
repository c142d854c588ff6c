"""The panel's "on Flame" line in the terms of the row's columns (cancelled calls end Failed on Flame)."""

from __future__ import annotations

from flame_jupyter.display.panel_status import flame_line, merge_status


def _session(pending: int = 0, running: int = 0, succeed: int = 0, failed: int = 0) -> dict:
    return {
        "state": "open",
        "app": "a",
        "pending": pending,
        "running": running,
        "succeed": succeed,
        "failed": failed,
    }


def _counts(**kw: int) -> dict[str, int]:
    return {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0, **kw}


def test_cancelled_calls_are_not_said_as_failures() -> None:
    assert (
        flame_line(_session(failed=3), _counts(cancelled=3))
        == "0 pending · 0 running · 0 ok · 0 failed · 3 cancelled"
    )
    assert flame_line(_session(succeed=2, failed=4), _counts(done=2, failed=1, cancelled=3)) == (
        "0 pending · 0 running · 2 ok · 1 failed · 3 cancelled"
    )


def test_a_cancelled_call_whose_task_has_not_ended_yet_is_said_so() -> None:
    line = flame_line(_session(pending=2, failed=1), _counts(cancelled=3))
    assert line == "2 pending · 0 running · 0 ok · 0 failed · 3 cancelled (2 still ending)"


def test_a_closed_session_cancelled_its_pending_tasks_itself() -> None:
    closed = {**_session(failed=1), "state": "closed"}  # one cancelled while running, two by the close
    assert flame_line(closed, _counts(cancelled=3)) == "0 pending · 0 running · 0 ok · 0 failed · 3 cancelled"
    assert flame_line(_session(failed=1), _counts(cancelled=3)).endswith("3 cancelled (2 still ending)")


def test_without_cancels_the_line_is_flames_counts() -> None:
    assert (
        flame_line(_session(running=1, succeed=2), _counts(running=1, done=2))
        == "0 pending · 1 running · 2 ok · 0 failed"
    )


def test_merge_status_uses_it() -> None:
    row = {"name": "s", "kind": "function", "app": "a", "session_id": "s1", "closed": False}
    kernel = {"services": [{**row, "counts": _counts(cancelled=1), "throughput": 0.0, "flame": ""}]}
    merged = merge_status(
        kernel, {"sessions": {"s1": {**_session(failed=1), "state": "closed"}}, "runtime": "x"}
    )
    assert merged["services"][0]["flame"] == "0 pending · 0 running · 0 ok · 0 failed · 1 cancelled · closed"


def test_calls_cancelled_inside_a_batch_fail_no_task() -> None:
    # 3 cancelled calls, of which only 1 was a task of its own (2 were skipped inside a batch):
    # Flame failed 1 task for them; nothing is "still ending".
    session = {"pending": 0, "running": 0, "succeed": 4, "failed": 1, "state": "open"}
    line = flame_line(session, _counts(cancelled=3), cancelled_tasks=1)
    assert line == "0 pending · 0 running · 4 ok · 0 failed · 3 cancelled", line
