"""A small Flame service for the conformance tests: echoes JSON requests and reports its contexts.

Request (JSON): ``{"say": str, "reply": str | None, "sleep_ms": int, "fail": bool, "show": [..]}``
where ``show`` may name ``"task"``, ``"session"`` and ``"app"``. Common data, when given, is an
encoded ObjectRef to a JSON object ``{"note": str | None, "fail_tasks": bool, "fail_enter": bool}``
in the object cache, so every bind also checks that the executor reaches the cache.
"""

from __future__ import annotations

import json
import time
from typing import Any

import flamepy
from flamepy.core import ObjectRef, get_object


class EchoService(flamepy.FlameService):
    """Counts enters/leaves/tasks per bind; fails on request or by session-wide flags."""

    def __init__(self) -> None:
        self._session: flamepy.SessionContext | None = None
        self._settings: dict[str, Any] = {}
        self._tasks = 0
        self._enters = 0
        self._leaves = 0

    def on_session_enter(self, context: flamepy.SessionContext) -> None:
        self._session = context
        raw = context.common_data()
        self._settings = json.loads(get_object(ObjectRef.decode(raw)).decode()) if raw is not None else {}
        self._enters += 1
        self._tasks = 0
        if self._settings.get("fail_enter"):
            raise RuntimeError("conformance: refusing to enter this session")

    def on_task_invoke(self, context: flamepy.TaskContext) -> flamepy.TaskOutput | None:
        self._tasks += 1
        request = json.loads(context.input.decode()) if context.input else {}
        if self._settings.get("fail_tasks") or request.get("fail"):
            raise ValueError(f"conformance failure in task {context.task_id}")
        if request.get("sleep_ms"):
            time.sleep(request["sleep_ms"] / 1000.0)
        show = set(request.get("show", []))
        reply: dict[str, Any] = {
            "out": request.get("reply") if request.get("reply") is not None else request.get("say"),
            "note": self._settings.get("note"),
            "counts": {"tasks": self._tasks, "enters": self._enters, "leaves": self._leaves},
        }
        if "task" in show:
            reply["task"] = {
                "task_id": context.task_id,
                "session_id": context.session_id,
                "input_len": len(context.input or b""),
            }
        if "session" in show and self._session is not None:
            reply["session"] = {
                "session_id": self._session.session_id,
                "has_common_data": self._session.common_data() is not None,
            }
        if "app" in show and self._session is not None:
            app = self._session.application
            reply["app"] = {
                "name": app.name,
                "command": app.command,
                "working_directory": app.working_directory,
                "url": app.url,
            }
        return flamepy.TaskOutput(json.dumps(reply).encode())

    def on_session_leave(self) -> None:
        self._leaves += 1
        self._session = None
        self._settings = {}


if __name__ == "__main__":
    flamepy.run(EchoService())
