"""The executor manager: applies the scheduling plan, and runs each instance's life in a thread.

Which session gets how many instances is the pure rule in :mod:`flame_local.executors.scheduler`;
the manager snapshots its state into it at most every 5 ms when busy and starts or releases
instances as the plan says.  Apps with the Wasm shim are never scheduled.

An instance's life is Flame's executor state machine (``executor_manager/src/states``): bind
(install the package, start the process, ``OnSessionEnter``) -> bound (take a pending task, run
``OnTaskInvoke``, complete it; unbind after ``delay_release`` without work) -> unbind
(``OnSessionLeave``, stop the process group, remove the socket and work dir).  A failing bind step
records Flame's bind-failure events (1001, then 1002 at the retry limit).

Slots (:mod:`flame_local.executors.lending`): an instance starts a task only with a run permit
(at most ``max_instances`` run tasks that do not wait); a running task whose process watches
other tasks lends its slot; at most ``max_processes`` instance processes live at once.

Long because an instance thread's bind, serve and unbind steps share the manager's tables and lock.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flamepy.proto import types_pb2

from flame_local import socket_dirs
from flame_local.executors import scheduler
from flame_local.executors.environment import NO_WARM, Environments, InstallFailed, safe_name
from flame_local.executors.instances import InstanceProcess, ShimError, resolve_argv
from flame_local.executors.lending import PeerInstances, SlotBook, Wait
from flame_local.executors.lifecycle import (
    RC_INSTALL_FAILED,
    RC_SHIM_FAILED,
    BindError,
    enter_session,
    run_task,
)
from flame_local.executors.warm import WarmPool
from flame_local.settings import RuntimeSettings
from flame_local.state import Application, Session, Store, Task, TaskState

log = logging.getLogger(__name__)

SCHEDULE_COALESCE_S = 0.005  # at most one scheduling pass per 5 ms when busy
PERMIT_POLL_S = 0.01  # an instance with work but no free slot looks again this often

STATE_LOST = (
    "this session's state was lost because the flame-local runtime ended its idle instance {iid} to "
    "run another session's work: all {limit} instance processes (max_processes) were in use. This "
    "task did not run; the session's next tasks run on a fresh instance. Close sessions you no "
    "longer use, or raise the runtime's max_processes (FLAME_LOCAL_MAX_PROCESSES)"
)


@dataclass
class Instance:
    """Book-keeping for one instance (an executor bound to one session)."""

    id: str
    session_id: str
    app: str
    state: str = "binding"  # binding | bound | running | unbinding
    evict: bool = False
    pid: int | None = None
    tasks_done: int = 0
    current_task: int | None = None
    started: float = field(default_factory=time.time)
    warm: bool = False  # started from a warm interpreter

    _STATE = {
        "binding": types_pb2.ExecutorState.ExecutorBinding,
        "bound": types_pb2.ExecutorState.ExecutorBound,
        "running": types_pb2.ExecutorState.ExecutorBound,
        "unbinding": types_pb2.ExecutorState.ExecutorUnbinding,
    }

    def to_proto(self, node: str) -> types_pb2.Executor:
        return types_pb2.Executor(
            metadata=types_pb2.Metadata(id=self.id, name=self.id),
            spec=types_pb2.ExecutorSpec(node=node, shim=types_pb2.Shim.Host),
            status=types_pb2.ExecutorStatus(state=self._STATE[self.state], session_id=self.session_id),
        )


class ExecutorManager:
    """Schedules instances for open sessions and runs each one in its own thread."""

    def __init__(
        self,
        store: Store,
        settings: RuntimeSettings,
        home: Path,
        socket_dir: Path,
        endpoint: str,
        cache_endpoint: str,
        read_cache_object: Callable[[str], bytes] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.home = home
        self.socket_dir = socket_dir
        self.endpoint = endpoint
        self.cache_endpoint = cache_endpoint
        self.read_cache_object = read_cache_object
        self.python = settings.python or sys.executable
        self.node = platform.node() or "localhost"
        self.envs = Environments(settings, home, self.python, endpoint, cache_endpoint, read_cache_object)
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._retry_at: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._stopping = False
        self._stop_grace = 0.0
        self._procs: dict[str, InstanceProcess] = {}  # bound instances' processes, by instance id
        self._log_sessions: set[str] = set()  # sessions with a log dir under logs/sessions
        self.slots = SlotBook(settings.max_instances)
        self._peers = PeerInstances()
        self._lost: dict[str, str] = {}  # session id -> why its state was lost (told to its next task)
        host, _, port = endpoint.rpartition("://")[2].rpartition(":")
        self._frontend_addr = ("127.0.0.1" if host in ("localhost", "") else host.strip("[]"), int(port or 0))
        self._thread = threading.Thread(target=self._schedule_loop, name="flame-local-scheduler", daemon=True)
        self.warm: WarmPool | None = None
        if settings.warm_instances > 0:
            self.warm = WarmPool(
                self.python,
                settings.warm_instances,
                {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")},
            )

    # -- public -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if self.warm is not None:
            self.warm.start()

    def poke(self) -> None:
        self._wake.set()

    def note_watch(self, peer: str, session_id: str) -> Callable[[], None]:
        """A ``WatchTask`` stream from ``peer`` opens: if an instance's process (or a descendant)
        opened it while the instance runs a task, that task waits and its slot is lent until the
        returned callable is called (when the stream ends)."""
        with self._lock:
            roots = {
                i.pid: i for i in self._instances.values() if i.pid is not None and i.state != "unbinding"
            }
            if not any(i.state == "running" for i in roots.values()):
                return _nothing
        try:
            root = self._peers.root_of(peer, self._frontend_addr, roots)
        except OSError:  # no file descriptor left: the watch just does not lend
            return _nothing
        inst = roots.get(root) if root is not None else None
        if inst is None or inst.state != "running":
            return _nothing
        token = self.slots.open_wait(Wait(inst.id, inst.current_task, session_id))
        self.poke()

        def close() -> None:
            self.slots.close_wait(token)
            self.poke()

        return close

    def list_executors(self) -> list[types_pb2.Executor]:
        with self._lock:
            return [i.to_proto(self.node) for i in self._instances.values()]

    def is_idle(self) -> bool:
        """No instance is binding or running a task, and no task waits."""
        with self._lock:
            if any(i.state in ("binding", "running") for i in self._instances.values()):
                return False
        with self.store.lock:
            return not any(s.open and s.pending for s in self.store.sessions.values())

    def instances(self) -> list[Instance]:
        with self._lock:
            return [
                Instance(**{k: getattr(i, k) for k in i.__dataclass_fields__})
                for i in self._instances.values()
            ]

    def stop(self, grace: float) -> None:
        """Stop scheduling and fail pending tasks, let running tasks finish for up to ``grace``
        seconds (their watchers see them end), then end every instance process."""
        self._stopping = True
        self._stop_grace = grace
        self._wake.set()
        deadline = time.monotonic() + grace
        for inst in list(self._instances.values()):
            inst.evict = True
        self.store.drain("the flame-local runtime stopped before this task started")
        for t in list(self._threads.values()):
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._procs.values())
        for proc in left:  # still running after the grace period: end it (its task fails)
            proc.kill_group()
        for t in list(self._threads.values()):
            t.join(5.0)
        self.store.shutdown()  # watchers still waiting (nothing should be) end with UNAVAILABLE
        self._thread.join(5.0)
        if self.warm is not None:
            self.warm.close()

    # -- scheduling ------------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(0.25)
            # Every task creation and completion wakes the scheduler; bound instances take their
            # session's tasks without it, so a short pause lets a burst share one pass.
            time.sleep(SCHEDULE_COALESCE_S)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._schedule_once()
            except Exception:  # noqa: BLE001 - the scheduler must survive anything
                log.exception("scheduling pass failed")

    def _schedule_once(self) -> None:
        now = time.monotonic()
        views: list[scheduler.SessionView] = []
        apps: dict[str, Application] = {}
        with self.store.lock:
            for ssn in self.store.sessions.values():
                app = self.store.apps.get(ssn.spec.application)
                # Flame's executors are Host: Wasm apps stay pending.
                schedulable = (
                    app is not None and not ssn.bind_blocked and app.spec.shim != types_pb2.Shim.Wasm
                )
                if ssn.open and schedulable:
                    assert app is not None
                    apps[ssn.id] = app
                views.append(
                    scheduler.SessionView(
                        id=ssn.id,
                        open=ssn.open,
                        schedulable=schedulable,
                        pending=ssn.counts[TaskState.PENDING],
                        running=ssn.counts[TaskState.RUNNING],
                        oldest_pending_ms=ssn.tasks[ssn.pending[0]].creation_time_ms if ssn.pending else None,
                        min_instances=ssn.spec.min_instances,
                        max_instances=ssn.spec.max_instances,
                        batch_size=ssn.spec.batch_size,
                        backing_off=self._retry_at.get(ssn.id, 0) > now,
                    )
                )
            current = {(a.name, a.generation) for a in self.store.apps.values()}
        with self._lock:
            live = list(self._instances.values())
        waiting = self.slots.waiting()
        awaited = self.slots.awaited()
        views = [dataclasses.replace(v, awaited=True) if v.id in awaited else v for v in views]
        snap = scheduler.Snapshot(
            sessions=views,
            instances=[
                scheduler.InstanceView(i.id, i.session_id, i.state, i.evict, waiting=i.id in waiting)
                for i in live
            ],
            capacity=self.settings.max_instances,
            now_ms=time.time() * 1000,
            process_limit=self.settings.process_limit,
        )
        self._apply(scheduler.plan(snap), apps)
        self._forget_retry_marks(set(apps))
        self.envs.forget_stale(current, {inst.app for inst in live})
        self._forget_stale_logs()

    def _apply(self, plan: scheduler.Plan, apps: dict[str, Application]) -> None:
        for sid in plan.launch:
            self._launch(sid, apps[sid])
        with self._lock:
            for iid in (*plan.release, *plan.reclaim):
                inst = self._instances.get(iid)
                if inst is None or inst.evict or inst.state != "bound":
                    continue
                if iid in plan.reclaim:
                    limit = self.settings.process_limit
                    log.warning(
                        "process limit %s reached: ending idle %s of session %s (its state is lost; its "
                        "next task is told) for a session that waits",
                        limit,
                        iid,
                        inst.session_id,
                    )
                    self._lost[inst.session_id] = STATE_LOST.format(iid=iid, limit=limit)
                self._release(inst)

    def _forget_stale_logs(self) -> None:
        """Remove the instance logs of sessions the runtime has forgotten (deleted, their app
        unregistered, or dropped past ``max_closed_sessions``): logs live as long as the session's
        record, so the home does not grow with every session ever opened."""
        if not self._log_sessions:
            return
        with self.store.lock:
            known = set(self.store.sessions)
        with self._lock:
            busy = {i.session_id for i in self._instances.values()}
            stale = [sid for sid in self._log_sessions if sid not in known and sid not in busy]
            self._log_sessions.difference_update(stale)
        if stale:
            kept = {safe_name(sid) for sid in known | busy}
            for sid in stale:
                if safe_name(sid) not in kept:
                    shutil.rmtree(self.home / "logs" / "sessions" / safe_name(sid), ignore_errors=True)

    def _release(self, inst: Instance) -> None:
        inst.evict = True
        self._notify_session(inst.session_id)

    def _notify_session(self, session_id: str) -> None:
        with self.store.lock:
            ssn = self.store.sessions.get(session_id)
            if ssn is not None and ssn.work is not None:
                ssn.work.notify_all()

    def _forget_retry_marks(self, open_sessions: set[str]) -> None:
        for sid in [s for s in self._retry_at if s not in open_sessions]:
            del self._retry_at[sid]

    def _launch(self, session_id: str, app: Application) -> None:
        inst = Instance(id=f"exec-{next(self._ids)}", session_id=session_id, app=app.name)
        thread = threading.Thread(
            target=self._run, args=(inst, app), name=f"flame-local-{inst.id}", daemon=True
        )
        with self._lock:
            self._instances[inst.id] = inst
            self._threads[inst.id] = thread
        thread.start()

    # -- one instance ------------------------------------------------------------------------------
    def _run(self, inst: Instance, app: Application) -> None:
        proc: InstanceProcess | None = None
        workdir: Path | None = None
        try:
            ssn = self._session(inst.session_id)
            if ssn is None or not ssn.open:
                return
            try:
                proc, workdir = self._bind(inst, app, ssn)
            except BindError as e:
                self._bind_failed(inst, e)
                return
            inst.state = "bound"
            inst.pid = proc.pid
            if self._stopping:
                return
            self._serve(inst, app, proc)
        except Exception:  # noqa: BLE001 - an instance thread must never take the runtime down
            log.exception("instance %s failed", inst.id)
        finally:
            inst.state = "unbinding"
            if proc is not None:
                proc.leave()
                proc.stop()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            with self._lock:
                self._instances.pop(inst.id, None)
                self._threads.pop(inst.id, None)
                self._procs.pop(inst.id, None)
            self.poke()

    def _session(self, session_id: str) -> Session | None:
        with self.store.lock:
            return self.store.sessions.get(session_id)

    def _bind(self, inst: Instance, app: Application, ssn: Session) -> tuple[InstanceProcess, Path | None]:
        env = self.envs.for_instance(inst.id, app)
        if app.spec.url and app.spec.installer:
            try:
                env = self.envs.with_package(app, env)
            except InstallFailed as e:
                raise BindError(RC_INSTALL_FAILED, str(e)) from None
        spec = app.spec
        workdir: Path | None = None
        if spec.working_directory:
            cwd = Path(spec.working_directory)
            if not cwd.is_dir():
                raise BindError(
                    RC_SHIM_FAILED, f"shim creation failed: working directory {cwd} does not exist"
                )
        else:
            workdir = cwd = self.home / "work" / inst.id
            cwd.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not spec.command:
            raise BindError(RC_SHIM_FAILED, f"shim creation failed: application '{app.name}' has no command")
        argv = resolve_argv(spec.command, list(spec.arguments), env, self.home, self.python)
        log_dir = self.home / "logs" / "sessions" / safe_name(inst.session_id)
        with self._lock:
            self._log_sessions.add(inst.session_id)
        warm_ok = env.pop(NO_WARM, None) is None and self.warm is not None and self.warm.eligible(argv, env)
        try:
            socket_dirs.ensure(self.socket_dir)  # a temp cleaner may have removed it
        except OSError as e:
            raise BindError(RC_SHIM_FAILED, f"shim creation failed: {e}") from None
        proc = InstanceProcess(inst.id, argv, env, cwd, self.socket_dir / f"{inst.id}.sock", log_dir)
        try:
            proc.start(self.settings.bind_timeout, warm=self.warm if warm_ok else None)
        except ShimError as e:
            proc.stop(grace=0.5)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            raise BindError(RC_SHIM_FAILED, f"shim creation failed: {e}") from None
        inst.pid = proc.pid
        inst.warm = proc.warm
        with self._lock:
            self._procs[inst.id] = proc
        enter_session(proc, app, ssn, self.settings.bind_timeout)
        return proc, workdir

    def _bind_failed(self, inst: Instance, e: BindError) -> None:
        ssn = self._session(inst.session_id)
        if ssn is None or not ssn.open:
            log.debug("bind of %s ended with its session closed: %s", inst.id, e.detail)
            return
        message = f"Executor {inst.id} on node {self.node} failed to bind session with return_code {e.rc}: {e.detail}"
        log.warning("%s", message)
        blocked = self.store.record_bind_failure(inst.session_id, message, self.settings.bind_retry_limit)
        if not blocked:
            with self.store.lock:
                failures = (
                    self.store.sessions[inst.session_id].bind_failures
                    if inst.session_id in self.store.sessions
                    else 1
                )
            self._retry_at[inst.session_id] = time.monotonic() + scheduler.bind_retry_delay(failures)

    def _serve(self, inst: Instance, app: Application, proc: InstanceProcess) -> None:
        delay_release = app.spec.delay_release if app.spec.HasField("delay_release") else 60

        def stop() -> bool:
            return inst.evict or self._stopping

        while True:
            deadline = time.monotonic() + delay_release
            task = self._next_task(inst, deadline, stop)
            if task is None:
                if not stop() and self._keep_for_min(inst):
                    continue
                return
            with self._lock:
                lost = self._lost.pop(inst.session_id, None) if inst.tasks_done == 0 else None
            if lost is not None:  # this fresh instance replaces one that held the session's state
                self.store.complete_task(task, False, None, lost)
                self.slots.finished(inst.id)
                continue
            inst.state, inst.current_task = "running", task.id
            self.slots.running(inst.id, task.id)
            try:
                # False: the instance is gone and must be replaced.
                alive = run_task(self.store, inst.id, proc, task, lambda: self._stop_grace)
            finally:
                self.slots.finished(inst.id)
            inst.state, inst.current_task = "bound", None
            inst.tasks_done += 1
            if not alive:
                return

    def _next_task(self, inst: Instance, deadline: float, stop: Callable[[], bool]) -> Task | None:
        """The session's next pending task, taken only with a run permit (a free slot); None when
        the session closes, ``stop()`` or ``deadline`` passes without pending work."""
        while True:
            with self.store.lock:
                ssn = self.store.sessions.get(inst.session_id)
                while True:
                    if ssn is None or not ssn.open or self.store.closed or stop():
                        return None
                    if ssn.pending:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    assert ssn.work is not None
                    ssn.work.wait(min(remaining, 1.0))
                    ssn = self.store.sessions.get(inst.session_id)
            if not self.slots.try_start(inst.id):
                time.sleep(PERMIT_POLL_S)  # pending work, no free slot: not idle, so no deadline
                deadline = max(deadline, time.monotonic() + PERMIT_POLL_S)
                continue
            task = self.store.take_task(inst.session_id, inst.id, time.monotonic(), stop)
            if task is not None:
                return task
            self.slots.finished(inst.id)

    def _keep_for_min(self, inst: Instance) -> bool:
        """An idle instance stays bound while its session is open and needs it for min_instances."""
        with self.store.lock:
            ssn = self.store.sessions.get(inst.session_id)
            if ssn is None or not ssn.open:
                return False
            minimum = ssn.spec.min_instances
        with self._lock:
            bound = sum(
                1 for i in self._instances.values() if i.session_id == inst.session_id and not i.evict
            )
        return scheduler.keeps_min_slot(minimum, bound)


def _nothing() -> None:
    """A watch that lends no slot ends."""
