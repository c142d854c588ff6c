"""The runtime's state store: applications, sessions, tasks and the waits on them.

One lock guards everything. Instance workers wait for pending tasks of their session on a
condition of that lock; ``WatchTask`` streams register a wake-up callable on the task they watch
(called under the lock on every change, as Flame's per-task watch channel in ``notify.rs``).  The state machines are in :mod:`flame_local.state.records`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable

from flamepy.proto import types_pb2

from flame_local.errors import (
    already_exists,
    internal,
    invalid,
    not_found,
    unavailable,
)
from flame_local.state import apps
from flame_local.state.records import (
    SESSION_BIND_FAILED,
    SESSION_RETRY_LIMIT_REACHED,
    Event,
    Session,
    SessionSpec,
    Task,
    TaskState,
    now_ms,
)
from flame_local.state.records import (
    check_session_id as _check_session_id,
)
from flame_local.state.records import (
    parse_task_id as _parse_task_id,
)

__all__ = ["Store"]


class Store:
    """All applications, sessions and tasks of one runtime, and the waits on them."""

    def __init__(
        self,
        *,
        max_closed_sessions: int = 1000,
        on_change: Callable[[], None] | None = None,
        fail_unbindable_tasks: bool = False,
    ):
        self.fail_unbindable_tasks = fail_unbindable_tasks  # not Flame: see RuntimeSettings
        self.lock = threading.Lock()
        self.apps: dict[str, apps.Application] = {}
        self.sessions: dict[str, Session] = {}
        self._closed_order: collections.deque[str] = collections.deque()
        self._max_closed = max_closed_sessions
        self._on_change = on_change or (lambda: None)
        self._generation = 0
        self.closed = False
        self.draining = False  # stopping: no new sessions or tasks; running tasks may finish
        for name, spec in apps.default_applications().items():
            self.apps[name] = apps.Application(name=name, spec=spec)

    # -- applications -------------------------------------------------------------------------
    def register_application(self, name: str, spec: types_pb2.ApplicationSpec) -> None:
        apps.validate_name(name)
        with self.lock:
            if name in self.apps:
                raise apps.duplicate(name)
            self._generation += 1
            self.apps[name] = apps.Application(
                name=name, spec=apps.normalize(spec), generation=self._generation
            )

    def update_application(self, name: str, spec: types_pb2.ApplicationSpec) -> None:
        with self.lock:
            if name not in self.apps:
                raise not_found(f"Application {name} not found")
            self._refuse_open_sessions(name)
            self._generation += 1
            self.apps[name] = apps.Application(
                name=name, spec=apps.normalize(spec), generation=self._generation
            )

    def unregister_application(self, name: str) -> None:
        with self.lock:
            if name not in self.apps:
                raise not_found(f"Application {name} not found")
            self._refuse_open_sessions(name)
            del self.apps[name]
            for sid in [sid for sid, s in self.sessions.items() if s.spec.application == name]:
                self._drop_session(sid)
        self._on_change()

    def _refuse_open_sessions(self, name: str) -> None:
        """Flame's engine (sqlite.rs ``update_application``/``unregister_application``)."""
        count = sum(1 for s in self.sessions.values() if s.open and s.spec.application == name)
        if count:
            raise internal(f"{count} open sessions in the application")

    def get_application(self, name: str) -> apps.Application:
        with self.lock:
            app = self.apps.get(name)
            if app is None:
                raise not_found(f"application <{name}> not found")  # sqlite.rs get_application
            return app

    def list_applications(self) -> list[apps.Application]:
        with self.lock:
            return list(self.apps.values())

    # -- sessions -------------------------------------------------------------------------------
    def _new_session(self, session_id: str, spec: SessionSpec) -> Session:
        app = self.apps.get(spec.application)
        if app is None:  # sqlite.rs _create_session: the application sub-select is NULL
            raise internal(
                "error returned from database: (code: 1299) NOT NULL constraint failed: sessions.application"
            )
        if session_id in self.sessions:
            raise already_exists(f"Session '{session_id}' already exists")
        ssn = Session(id=session_id, spec=spec, work=threading.Condition(self.lock))
        self.sessions[session_id] = ssn
        return ssn

    def create_session(self, session_id: str, spec: SessionSpec) -> types_pb2.Session:
        _check_session_id(session_id)
        with self.lock:
            self._check_open()
            proto = self._new_session(session_id, spec).to_proto()
        self._on_change()
        return proto

    def open_session(self, session_id: str, spec: SessionSpec | None) -> types_pb2.Session:
        """Flame's OpenSession: return an open session, or create it when a spec is given."""
        _check_session_id(session_id)
        created = False
        with self.lock:
            self._check_open()
            ssn = self.sessions.get(session_id)
            if ssn is not None:
                if not ssn.open:
                    raise invalid(f"Session {session_id} is not open")
                if spec is not None:
                    ssn.spec.check_matches(session_id, spec)
            elif spec is None:
                raise not_found(f"Session {session_id} not found")
            else:
                ssn = self._new_session(session_id, spec)
                created = True
            proto = ssn.to_proto()
        if created:
            self._on_change()
        return proto

    def close_session(self, session_id: str) -> types_pb2.Session:
        with self.lock:
            ssn = self._session(session_id)
            if ssn.open:
                if ssn.counts[TaskState.RUNNING]:
                    raise internal("Cannot close session with running tasks")
                self._close_locked(ssn)
            proto = ssn.to_proto()
        self._on_change()
        return proto

    def _close_locked(self, ssn: Session) -> None:
        ssn.open = False
        ssn.completion_time_ms = now_ms()
        while ssn.pending:  # Flame's Storage::close_session records no event for these
            self._set_state(ssn, ssn.tasks[ssn.pending.popleft()], TaskState.CANCELLED, event=False)
        self._wake_watchers(ssn.tasks.values())  # Controller::close_session notifies every task
        assert ssn.work is not None
        ssn.work.notify_all()
        self._closed_order.append(ssn.id)
        while len(self._closed_order) > self._max_closed:
            old = self._closed_order.popleft()
            if old in self.sessions and not self.sessions[old].open:
                self._drop_session(old)

    def delete_session(self, session_id: str) -> types_pb2.Session:
        with self.lock:
            ssn = self._session(session_id)
            if ssn.open:
                raise invalid(f"Session {session_id} is open; close it before deleting it")
            proto = ssn.to_proto()
            self._drop_session(session_id)
        return proto

    def _drop_session(self, session_id: str) -> None:
        ssn = self.sessions.pop(session_id, None)
        if ssn is not None:
            if ssn.work is not None:
                ssn.work.notify_all()
            self._wake_watchers(ssn.tasks.values())

    @staticmethod
    def _wake_watchers(tasks: Iterable[Task]) -> None:
        for task in tasks:
            for wake in list(task.watchers):
                wake()

    def get_session(self, session_id: str) -> types_pb2.Session:
        with self.lock:
            return self._session(session_id).to_proto()

    def list_sessions(self) -> list[types_pb2.Session]:
        with self.lock:
            return [s.to_proto() for s in self.sessions.values()]

    def add_session_event(self, session_id: str, code: int, message: str) -> None:
        with self.lock:
            ssn = self.sessions.get(session_id)
            if ssn is not None:
                ssn.events.append(Event(code, message))

    def record_bind_failure(self, session_id: str, message: str, retry_limit: int) -> bool:
        """Record event 1001; return True when the retry limit is now reached (event 1002)."""
        with self.lock:
            ssn = self.sessions.get(session_id)
            if ssn is None:
                return True
            ssn.events.append(Event(SESSION_BIND_FAILED, message))
            ssn.bind_failures += 1
            if ssn.bind_failures >= retry_limit and not ssn.bind_blocked:
                ssn.bind_blocked = True
                ssn.bind_error = (
                    f"no executor could be bound to session {session_id} after {ssn.bind_failures} attempts; "
                    f"last error: {message}"
                )
                ssn.events.append(
                    Event(
                        SESSION_RETRY_LIMIT_REACHED,
                        f"Session <{session_id}> reached the bind retry limit ({retry_limit}); "
                        "no more executors will be bound to it",
                    )
                )
                # Flame leaves them pending forever; only on request are they failed.
                while self.fail_unbindable_tasks and ssn.pending:
                    self._set_state(ssn, ssn.tasks[ssn.pending.popleft()], TaskState.FAILED, ssn.bind_error)
            return ssn.bind_blocked

    def _session(self, session_id: str) -> Session:
        ssn = self.sessions.get(session_id)
        if ssn is None:
            raise not_found(f"session <{session_id}> not found")
        return ssn

    # -- tasks ----------------------------------------------------------------------------------
    def create_task(self, session_id: str, task_input: bytes | None) -> types_pb2.Task:
        with self.lock:
            self._check_open()
            ssn = self._session(session_id)
            if not ssn.open:
                raise invalid("Cannot create task in closed session")
            task = Task(id=ssn.next_task_id, session_id=session_id, input=task_input)
            ssn.next_task_id += 1
            ssn.tasks[task.id] = task
            ssn.counts[TaskState.PENDING] += 1
            ssn.pending.append(task.id)
            task.events.append(Event(0, "Task was created with state <Pending>"))
            if ssn.bind_blocked and self.fail_unbindable_tasks:  # not Flame: fail it rather than hang
                ssn.pending.pop()
                self._set_state(ssn, task, TaskState.FAILED, ssn.bind_error)
            proto = task.to_proto()
            assert ssn.work is not None
            ssn.work.notify()
        self._on_change()
        return proto

    def get_task(self, session_id: str, task_id: str) -> types_pb2.Task:
        tid = _parse_task_id(task_id)
        with self.lock:
            task = self._task(session_id, tid)
            task.stored_events = list(task.events)  # Flame's get_task keeps them on the stored task
            return task.to_proto()

    def list_tasks(self, session_id: str) -> list[types_pb2.Task]:
        with self.lock:
            return [t.to_proto(events=False) for t in self._session(session_id).tasks.values()]

    def _task(self, session_id: str, task_id: int) -> Task:
        task = self._session(session_id).tasks.get(task_id)
        if task is None:
            raise not_found(f"task <{session_id}/{task_id}> not found")
        return task

    def watch(self, session_id: str, task_id: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` (under the store's lock: it must only signal) whenever the task may have
        changed or gone; return the function that stops it. Raises if the task is unknown."""
        tid = _parse_task_id(task_id)
        with self.lock:
            task = self._task(session_id, tid)
            task.watchers.append(wake)

        def unwatch() -> None:
            with self.lock:
                if wake in task.watchers:
                    task.watchers.remove(wake)

        return unwatch

    def watched(self, session_id: str, task_id: str) -> tuple[TaskState, types_pb2.Task] | None:
        """The task as WatchTask sends it (no events but the stored ones), None once it is gone."""
        tid = _parse_task_id(task_id)
        with self.lock:
            if self.closed:
                raise unavailable("the flame-local runtime is shutting down")
            ssn = self.sessions.get(session_id)
            task = ssn.tasks.get(tid) if ssn is not None else None
            return None if task is None else (task.state, task.to_proto(events=False))

    # -- executor side ----------------------------------------------------------------------------
    def take_task(
        self, session_id: str, executor_id: str, deadline: float, stop: Callable[[], bool]
    ) -> Task | None:
        """Wait until the session has a pending task (return it, now Running) or give up
        (session closed, ``stop()`` true, or ``deadline`` passed) and return None."""
        with self.lock:
            ssn = self.sessions.get(session_id)
            while ssn is not None and ssn.open and not self.closed and not stop():
                if ssn.pending:
                    task = ssn.tasks[ssn.pending.popleft()]
                    task.executor_id = executor_id
                    self._set_state(ssn, task, TaskState.RUNNING)
                    return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                assert ssn.work is not None
                ssn.work.wait(min(remaining, 1.0))
                ssn = self.sessions.get(session_id)
            return None

    def complete_task(self, task: Task, ok: bool, output: bytes | None, message: str | None) -> None:
        with self.lock:
            ssn = self.sessions.get(task.session_id)
            if ssn is None or ssn.tasks.get(task.id) is not task or task.state != TaskState.RUNNING:
                return
            task.output = output if ok else None
            self._set_state(ssn, task, TaskState.SUCCEED if ok else TaskState.FAILED, message)
        self._on_change()

    def _set_state(
        self, ssn: Session, task: Task, state: TaskState, message: str | None = None, *, event: bool = True
    ) -> None:
        ssn.counts[task.state] -= 1
        ssn.counts[state] += 1
        task.state = state
        task.stored_events = []  # Flame replaces the stored task on every update
        if not event:
            if state.terminal:
                task.completion_time_ms = now_ms()
        elif state == TaskState.RUNNING:
            task.events.append(Event(1, "Task state was updated to <Running>"))
        elif state.terminal:
            task.completion_time_ms = now_ms()
            if state == TaskState.FAILED:
                task.events.append(Event(3, message or "Task failed with state <Failed>"))
            else:
                task.events.append(Event(int(state), f"Task was completed with state <{state.name.title()}>"))
        self._wake_watchers((task,))

    def session_demand(self) -> list[tuple[Session, apps.Application]]:
        """Open sessions with their application, for the scheduler (called under no lock)."""
        with self.lock:
            return [
                (s, self.apps[s.spec.application])
                for s in self.sessions.values()
                if s.open and s.spec.application in self.apps
            ]

    def drain(self, message: str) -> None:
        """First step of a stop: refuse new sessions and tasks, fail every pending task with
        ``message``; running tasks go on, and their watchers still see them finish."""
        with self.lock:
            self.draining = True
            for ssn in self.sessions.values():
                while ssn.pending:
                    self._set_state(ssn, ssn.tasks[ssn.pending.popleft()], TaskState.FAILED, message)
                assert ssn.work is not None
                ssn.work.notify_all()
        self._on_change()

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            for ssn in self.sessions.values():
                assert ssn.work is not None
                ssn.work.notify_all()
                self._wake_watchers(ssn.tasks.values())

    def _check_open(self) -> None:
        if self.closed or self.draining:
            raise unavailable("the flame-local runtime is shutting down")
