"""Sessions, tasks and events as records, with Flame v0.6.0's states (``common/src/apis/types.rs``).

* session: ``Open -> Closed`` (closing refuses while a task runs, cancels pending tasks);
* task: ``Pending -> Running -> Succeed | Failed`` and ``Pending -> Cancelled`` on close.

The transitions themselves are made by :class:`flame_local.state.store.Store`, under its lock.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flamepy.proto import types_pb2

from flame_local.errors import invalid

# Event codes (common/src/apis/types.rs).
SESSION_BIND_FAILED = 1001
SESSION_RETRY_LIMIT_REACHED = 1002


class TaskState(enum.IntEnum):
    PENDING = 0
    RUNNING = 1
    SUCCEED = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def terminal(self) -> bool:
        return self >= TaskState.SUCCEED


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Event:
    code: int
    message: str | None
    creation_time_ms: int = field(default_factory=now_ms)

    def to_proto(self) -> types_pb2.Event:
        return types_pb2.Event(code=self.code, message=self.message, creation_time=self.creation_time_ms)


@dataclass
class Resources:
    cpu: int = 1
    memory: int = 1024 * 1024 * 1024
    gpu: int = 0

    def __str__(self) -> str:
        return f"ResourceRequirement {{ cpu: {self.cpu}, memory: {self.memory}, gpu: {self.gpu} }}"


@dataclass
class SessionSpec:
    application: str
    common_data: bytes | None = None
    min_instances: int = 0
    max_instances: int | None = None
    batch_size: int = 1
    priority: int = 0
    resreq: Resources = field(default_factory=Resources)

    @classmethod
    def from_proto(cls, spec: types_pb2.SessionSpec) -> SessionSpec:
        """Build a spec the way Flame's frontend does: batch alignment checked, resreq resolved."""
        batch = max(1, spec.batch_size)
        max_instances = spec.max_instances if spec.HasField("max_instances") else None
        if batch > 1:
            if spec.min_instances != 0 and spec.min_instances % batch != 0:
                raise invalid(
                    f"min_instances ({spec.min_instances}) must be 0 or a multiple of batch_size ({batch})"
                )
            if max_instances is not None and max_instances % batch != 0:
                raise invalid(f"max_instances ({max_instances}) must be a multiple of batch_size ({batch})")
        resreq = Resources()
        if spec.HasField("resreq"):
            resreq = Resources(cpu=spec.resreq.cpu, memory=spec.resreq.memory, gpu=spec.resreq.gpu)
        return cls(
            application=spec.application,
            common_data=spec.common_data if spec.HasField("common_data") else None,
            min_instances=spec.min_instances,
            max_instances=max_instances,
            batch_size=batch,
            priority=spec.priority,
            resreq=resreq,
        )

    def check_matches(self, session_id: str, other: SessionSpec) -> None:
        """Flame's ``SessionAttributes::validate_spec``; common_data is deliberately ignored."""
        for name in ("application", "resreq", "min_instances", "max_instances", "batch_size", "priority"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "application":
                    mine, theirs = f"'{mine}'", f"'{theirs}'"
                raise invalid(
                    f"session <{session_id}> spec mismatch: {name} differs (expected {mine}, got {theirs})"
                )


@dataclass
class Task:
    id: int
    session_id: str
    input: bytes | None
    state: TaskState = TaskState.PENDING
    output: bytes | None = None
    creation_time_ms: int = field(default_factory=now_ms)
    completion_time_ms: int | None = None
    events: list[Event] = field(default_factory=list)
    executor_id: str | None = None
    # What Flame's stored TaskPtr carries: the events of the last GetTask, until the next state
    # change replaces the task (storage/mod.rs `get_task`, common/src/apis/session.rs `update_task`).
    stored_events: list[Event] = field(default_factory=list)
    watchers: list[Callable[[], None]] = field(default_factory=list)  # WatchTask wake-ups

    def to_proto(self, *, events: bool = True) -> types_pb2.Task:
        """With ``events``, as GetTask sends it; without, as WatchTask and ListTask do."""
        shown = self.events if events else self.stored_events
        status = types_pb2.TaskStatus(
            state=int(self.state),
            creation_time=self.creation_time_ms,
            events=[e.to_proto() for e in shown],
        )
        if self.completion_time_ms is not None:
            status.completion_time = self.completion_time_ms
        spec = types_pb2.TaskSpec(session_id=self.session_id)
        if self.input is not None:
            spec.input = self.input
        if self.output is not None:
            spec.output = self.output
        tid = str(self.id)
        return types_pb2.Task(metadata=types_pb2.Metadata(id=tid, name=tid), spec=spec, status=status)


@dataclass
class Session:
    id: str
    spec: SessionSpec
    open: bool = True
    creation_time_ms: int = field(default_factory=now_ms)
    completion_time_ms: int | None = None
    tasks: dict[int, Task] = field(default_factory=dict)
    pending: collections.deque[int] = field(default_factory=collections.deque)
    counts: collections.Counter[TaskState] = field(default_factory=collections.Counter)
    events: list[Event] = field(default_factory=list)
    bind_failures: int = 0
    bind_blocked: bool = False
    bind_error: str | None = None
    next_task_id: int = 1
    work: threading.Condition | None = None  # set by the store; instance workers wait on it

    def to_proto(self) -> types_pb2.Session:
        spec = types_pb2.SessionSpec(
            application=self.spec.application,
            min_instances=self.spec.min_instances,
            batch_size=self.spec.batch_size,
            priority=self.spec.priority,
            resreq=types_pb2.ResourceRequirement(
                cpu=self.spec.resreq.cpu, memory=self.spec.resreq.memory, gpu=self.spec.resreq.gpu
            ),
        )
        if self.spec.common_data is not None:
            spec.common_data = self.spec.common_data
        if self.spec.max_instances is not None:
            spec.max_instances = self.spec.max_instances
        status = types_pb2.SessionStatus(
            state=types_pb2.SessionState.Open if self.open else types_pb2.SessionState.Closed,
            creation_time=self.creation_time_ms,
            pending=self.counts[TaskState.PENDING],
            running=self.counts[TaskState.RUNNING],
            succeed=self.counts[TaskState.SUCCEED],
            failed=self.counts[TaskState.FAILED],
            cancelled=self.counts[TaskState.CANCELLED],
            events=[e.to_proto() for e in self.events],
        )
        if self.completion_time_ms is not None:
            status.completion_time = self.completion_time_ms
        return types_pb2.Session(
            metadata=types_pb2.Metadata(id=self.id, name=self.id), spec=spec, status=status
        )


def parse_task_id(task_id: str) -> int:
    try:
        tid = int(task_id)
    except (TypeError, ValueError):
        raise invalid("invalid task id") from None
    if tid < 1:
        raise invalid("invalid task id")
    return tid


def check_session_id(session_id: str) -> None:
    if not session_id:
        raise invalid("invalid session id: it cannot be empty")
