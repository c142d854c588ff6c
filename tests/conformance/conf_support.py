"""Helpers shared by the conformance tests: service apps, requests, bounded waits."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import flamepy
from flamepy.core import put_object

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
TERMINAL = (flamepy.TaskState.SUCCEED, flamepy.TaskState.FAILED)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def service_attrs(script: str, **extra: Any) -> flamepy.ApplicationAttributes:
    """Attributes for one of this folder's service scripts, run by this interpreter."""
    return flamepy.ApplicationAttributes(
        command=sys.executable,
        arguments=[str(HERE / script)],
        working_directory=str(HERE),
        environments={"PYTHONPATH": str(HERE)},
        installer="python",
        **extra,
    )


@contextmanager
def registered(name: str, attrs: flamepy.ApplicationAttributes) -> Iterator[str]:
    """Register ``name`` for the block; close its sessions and unregister it afterwards."""
    flamepy.register_application(name, attrs)
    try:
        yield name
    finally:
        for ssn in flamepy.list_sessions():
            if ssn.application == name and ssn.state == flamepy.SessionState.OPEN:
                try:
                    flamepy.close_session(ssn.id)
                except flamepy.FlameError:
                    pass
        flamepy.unregister_application(name)


def request(say: str, **fields: Any) -> bytes:
    return json.dumps({"say": say, **fields}).encode()


def settings(app: str, **fields: Any) -> bytes:
    """Common data for the echo service: an encoded ObjectRef to a JSON settings object."""
    return put_object(f"{app}/{uid('cd')}", json.dumps(fields).encode()).encode()


def call(session: flamepy.Session, say: str, **fields: Any) -> dict[str, Any]:
    return json.loads(session.invoke(request(say, **fields)).decode())


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def watch_to_end(session: flamepy.Session, task_id: str, limit: int = 50) -> list[flamepy.Task]:
    """Every update WatchTask sends for a task, up to and including its terminal state."""
    updates: list[flamepy.Task] = []
    for update in session.watch_task(task_id):
        updates.append(update)
        if update.state in TERMINAL or len(updates) >= limit:
            break
    return updates
