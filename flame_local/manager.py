"""The executor manager: how many instances each session gets, and each instance's life.

Instance counts follow Flame's scheduler (``scheduler/plugins/{priority,gang}.rs``,
``actions/allocate.rs``): a session wants ``max(min_instances, floor((pending + running) /
batch_size) * batch_size)`` instances, capped by its ``max_instances``; new instances are committed
in multiples of ``batch_size`` only (gang).  Apps with the Wasm shim are never scheduled.  The
whole runtime runs at most ``settings.max_instances`` instance processes; when it is full and a
session waits, idle instances of other sessions are released early instead of lingering for
``delay_release``.

An instance's life is Flame's executor state machine (``executor_manager/src/states``): bind
(install the package, start the process, ``OnSessionEnter``) -> bound (take a pending task, run
``OnTaskInvoke``, complete it; unbind after ``delay_release`` without work) -> unbind
(``OnSessionLeave``, stop the process group, remove the socket and work dir).  A failing bind step
records Flame's bind-failure events (1001, then 1002 at the retry limit).
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flamepy.proto import shim_pb2, types_pb2

from flame_local import packages
from flame_local.apps import Application
from flame_local.instances import SHIM_ERRORS, InstanceProcess, ShimError, expand, resolve_argv
from flame_local.settings import RuntimeSettings
from flame_local.state import Session, Store, Task, TaskState
from flame_local.warm import WarmPool

log = logging.getLogger(__name__)

SCHEDULE_COALESCE_S = 0.005  # at most one scheduling pass per 5 ms when busy
STARVED_AFTER_MS = 1000  # then idle min_instances of other sessions yield their slot
SCALE_UP_DELAY_MS = 200  # pending work must wait this long before it gets more instances

# Flame's bind return codes (common/src/apis/types.rs).
RC_INSTALL_FAILED = 10
RC_SHIM_FAILED = 11
RC_ENTER_FAILED = 12


class BindError(Exception):
    def __init__(self, rc: int, detail: str):
        super().__init__(detail)
        self.rc = rc
        self.detail = detail


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


@dataclass
class _Install:
    lock: threading.Lock = field(default_factory=threading.Lock)
    env: dict[str, str] | None = None
    error: str | None = None
    installed_deps: bool = False  # dependencies were installed: they could shadow preloaded modules


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
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._installs: dict[tuple[str, int], _Install] = {}
        self._retry_at: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._stopping = False
        self._stop_grace = 0.0
        self._procs: dict[str, InstanceProcess] = {}  # bound instances' processes, by instance id
        self._log_sessions: set[str] = set()  # sessions with a log dir under logs/sessions
        self._app_tmp: set[str] = set()  # applications with a work/<app>/tmp dir
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
        now_ms = time.time() * 1000
        demand = []
        with self.store.lock:
            for ssn in self.store.sessions.values():
                app = self.store.apps.get(ssn.spec.application)
                if not ssn.open or app is None or ssn.bind_blocked:
                    continue
                if app.spec.shim == types_pb2.Shim.Wasm:
                    continue  # Flame's executors are Host; Wasm apps stay pending
                work = ssn.counts[TaskState.PENDING] + ssn.counts[TaskState.RUNNING]
                batch = ssn.spec.batch_size
                oldest = ssn.tasks[ssn.pending[0]].creation_time_ms if ssn.pending else float("inf")
                if oldest > now_ms - SCALE_UP_DELAY_MS:
                    # Like Flame's periodic scheduler, scale up only for work that has waited a
                    # moment: a burst of short calls stays on the instance that already runs
                    # (the guide's Counter example relies on it), min_instances start at once.
                    work = min(work, ssn.counts[TaskState.RUNNING] + (1 if ssn.pending else 0))
                want = max(ssn.spec.min_instances, (work // batch) * batch)
                if ssn.spec.max_instances is not None:
                    want = min(want, ssn.spec.max_instances)
                demand.append((oldest, ssn.id, app, want, batch))
        with self._lock:
            live = list(self._instances.values())
        have: dict[str, int] = {}
        for inst in live:
            if not inst.evict:
                have[inst.session_id] = have.get(inst.session_id, 0) + 1
        free = self.settings.max_instances - len(live)
        demand.sort(key=lambda d: (d[0], d[1]))
        wanting = []
        for _oldest, sid, app, want, batch in demand:
            deficit = want - have.get(sid, 0)
            deficit -= deficit % batch
            if deficit <= 0 or self._retry_at.get(sid, 0) > now:
                continue
            wanting.append([sid, app, deficit, batch])
        # Round-robin over waiting sessions, one gang at a time.
        progress = True
        while free > 0 and progress:
            progress = False
            for item in wanting:
                sid, app, deficit, batch = item
                if deficit > 0 and free >= batch:
                    for _ in range(batch):
                        self._launch(sid, app)
                    item[2] -= batch
                    free -= batch
                    progress = True
        starved = sum(item[2] for item in wanting)
        if starved > 0:
            oldest_of = {d[1]: d[0] for d in demand}
            # A session whose work has waited STARVED_AFTER_MS with no instance at all may also
            # take the slot of an idle instance kept only for another session's min_instances.
            urgent = sum(
                1
                for item in wanting
                if item[2] > 0
                and have.get(item[0], 0) == 0
                and oldest_of[item[0]] <= now_ms - STARVED_AFTER_MS
            )
            self._evict_idle(starved, {item[0] for item in wanting if item[2] > 0}, below_min=urgent)
        self._forget_retry_marks({d[1] for d in demand})
        self._forget_stale_installs({inst.app for inst in live})
        self._forget_stale_logs()

    def _forget_stale_installs(self, in_use: set[str]) -> None:
        """Remove installed packages of applications that were unregistered or re-registered."""
        with self.store.lock:
            current = {(a.name, a.generation) for a in self.store.apps.values()}
        with self._lock:
            stale = [k for k in self._installs if k not in current and k[0] not in in_use]
            for k in stale:
                del self._installs[k]
        names = {name for name, _ in current}
        for name, generation in stale:
            shutil.rmtree(self.home / "apps" / f"{_safe(name)}-{generation}", ignore_errors=True)
            if name not in names:
                (self.home / "logs" / "install" / f"{_safe(name)}.log").unlink(missing_ok=True)
        with self._lock:
            gone = [n for n in self._app_tmp if n not in names and n not in in_use]
            self._app_tmp.difference_update(gone)
        for name in gone:  # the TMPDIR of an unregistered application's instances
            shutil.rmtree(self.home / "work" / _safe(name), ignore_errors=True)

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
            kept = {_safe(sid) for sid in known | busy}
            for sid in stale:
                if _safe(sid) not in kept:
                    shutil.rmtree(self.home / "logs" / "sessions" / _safe(sid), ignore_errors=True)

    def _evict_idle(self, count: int, waiting: set[str], below_min: int = 0) -> None:
        """Release idle instances of sessions without pending work to make room for others:
        first those above their session's min_instances, then up to ``below_min`` more that
        only keep a min_instances slot (their session binds again when it has work and a slot)."""
        min_of = {}
        with self.store.lock:
            for ssn in self.store.sessions.values():
                min_of[ssn.id] = (
                    (ssn.spec.min_instances, ssn.counts[TaskState.PENDING]) if ssn.open else (0, 0)
                )
        with self._lock:
            per_session: dict[str, int] = {}
            for inst in self._instances.values():
                if not inst.evict:
                    per_session[inst.session_id] = per_session.get(inst.session_id, 0) + 1
            idle = [  # bound, not running, and their session has no pending work
                inst
                for inst in self._instances.values()
                if not inst.evict
                and inst.state == "bound"
                and inst.session_id not in waiting
                and min_of.get(inst.session_id, (0, 0))[1] == 0
            ]
            for inst in idle:
                if count <= 0:
                    return
                if per_session[inst.session_id] > min_of.get(inst.session_id, (0, 0))[0]:
                    per_session[inst.session_id] -= 1
                    count -= 1
                    self._release(inst)
            for inst in idle:
                if below_min <= 0 or count <= 0:
                    return
                if not inst.evict:
                    log.info(
                        "releasing idle %s of session %s for a session that waits", inst.id, inst.session_id
                    )
                    below_min -= 1
                    count -= 1
                    self._release(inst)

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
        env = self._environment(inst, app)
        if app.spec.url and app.spec.installer:
            env = self._with_package(app, env)
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
        log_dir = self.home / "logs" / "sessions" / _safe(inst.session_id)
        with self._lock:
            self._log_sessions.add(inst.session_id)
        warm_ok = env.pop(_NO_WARM, None) is None and self.warm is not None and self.warm.eligible(argv, env)
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
        ctx = shim_pb2.SessionContext(
            session_id=ssn.id,
            application=shim_pb2.ApplicationContext(
                name=app.name,
                shim=spec.shim,
                image=spec.image if spec.HasField("image") else None,
                command=spec.command if spec.HasField("command") else None,
                working_directory=spec.working_directory if spec.HasField("working_directory") else None,
                url=spec.url if spec.HasField("url") else None,
                installer=spec.installer if spec.HasField("installer") else None,
            ),
        )
        if ssn.spec.common_data is not None:
            ctx.common_data = ssn.spec.common_data
        try:
            result = proc.enter(ctx, timeout=self.settings.bind_timeout)
        except SHIM_ERRORS as e:
            proc.wait_exit(0.5)
            detail = f"{proc.exit_description()}; {e.details() if hasattr(e, 'details') else e}"
            tail = proc.stderr_tail()
            proc.stop(grace=0.5)
            raise BindError(
                RC_ENTER_FAILED, f"on_session_enter failed: {detail}" + (f"; stderr: {tail}" if tail else "")
            ) from None
        if result.return_code != 0:
            proc.leave()
            proc.stop(grace=0.5)
            raise BindError(RC_ENTER_FAILED, f"on_session_enter failed: {result.message}")
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
            self._retry_at[inst.session_id] = time.monotonic() + min(2.0, 0.1 * 2**failures)

    def _serve(self, inst: Instance, app: Application, proc: InstanceProcess) -> None:
        delay_release = app.spec.delay_release if app.spec.HasField("delay_release") else 60

        def stop() -> bool:
            return inst.evict or self._stopping

        while True:
            deadline = time.monotonic() + delay_release
            task = self.store.take_task(inst.session_id, inst.id, deadline, stop)
            if task is None:
                if not stop() and self._keep_for_min(inst):
                    continue
                return
            inst.state, inst.current_task = "running", task.id
            alive = self._invoke(inst, proc, task)
            inst.state, inst.current_task = "bound", None
            inst.tasks_done += 1
            if not alive:
                return

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
        return bound <= minimum

    def _invoke(self, inst: Instance, proc: InstanceProcess, task: Task) -> bool:
        """Run one task; return False when the instance is gone and must be replaced."""
        ctx = shim_pb2.TaskContext(task_id=str(task.id), session_id=task.session_id)
        if task.input is not None:
            ctx.input = task.input
        try:
            result = proc.invoke(ctx)
        except SHIM_ERRORS as e:
            proc.wait_exit(0.5)  # let the process finish dying so we can say how it ended
            if proc.ended_by_runtime:
                self.store.complete_task(
                    task,
                    False,
                    None,
                    f"the flame-local runtime stopped: task {task.id} of session {task.session_id} was still "
                    f"running after the {self._stop_grace:g} s grace period and was ended",
                )
            elif proc.alive():
                detail = e.details() if hasattr(e, "details") else str(e)
                self.store.complete_task(task, False, None, f"instance {inst.id} transport error: {detail}")
            else:
                self.store.complete_task(
                    task,
                    False,
                    None,
                    f"instance process {proc.pid} {proc.exit_description()} while running task {task.id} "
                    f"of session {task.session_id}; the session continues on a fresh instance",
                )
            return False
        ok = result.return_code == 0
        output = result.output if result.HasField("output") else None
        message = result.message if result.HasField("message") else None
        self.store.complete_task(
            task, ok, output, message or (None if ok else "Task failed with state <Failed>")
        )
        return True

    # -- environment and packages --------------------------------------------------------------------
    def _environment(self, inst: Instance, app: Application) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_INSTANCE")}
        env.update(self.settings.extra_env)
        for name, value in app.environments.items():
            env[name] = _expand_all_or_nothing(value, env)
        level = self.settings.instance_log_level
        env.update(
            FLAME_LOG=level,
            RUST_LOG=level,
            FLAME_ENDPOINT=self.endpoint,
            FLAME_CACHE_ENDPOINT=self.cache_endpoint,
            FLAME_HOME=str(self.home),
            FLAME_EXECUTOR_ID=inst.id,
        )
        env.pop("FLAME_CACHE_STORAGE", None)  # instances always talk to this runtime's cache
        tmp = self.home / "work" / _safe(app.name) / "tmp"
        with self._lock:
            self._app_tmp.add(app.name)
        tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))
        pydir = str(Path(self.python).parent)
        env["PATH"] = pydir + os.pathsep + env.get("PATH", os.defpath)
        return env

    def _with_package(self, app: Application, env: dict[str, str]) -> dict[str, str]:
        key = (app.name, app.generation)
        with self._lock:
            install = self._installs.setdefault(key, _Install())
        with install.lock:
            if install.env is None and install.error is None:
                workdir = self.home / "apps" / f"{_safe(app.name)}-{app.generation}"
                url = expand(app.spec.url, env)
                try:
                    prepared = packages.prepare(
                        url,
                        workdir,
                        read_cache_object=self.read_cache_object,
                        python=self.python,
                        log_path=self.home / "logs" / "install" / f"{_safe(app.name)}.log",
                    )
                except packages.PackageError as e:
                    install.error = str(e)
                else:
                    install.env = dict(prepared.env)
                    install.installed_deps = bool(prepared.install.installed)
            if install.error is not None:
                raise BindError(RC_INSTALL_FAILED, install.error)
            assert install.env is not None
            env = dict(env)
            if install.installed_deps:
                env[_NO_WARM] = "1"
            for name, value in install.env.items():
                if name in ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH") and env.get(name):
                    env[name] = value + os.pathsep + env[name]
                else:
                    env.setdefault(name, value)
            return env


_NO_WARM = "\x00no-warm"  # internal marker in the env dict, never passed to a process


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "_"


def _expand_all_or_nothing(value: str, env: dict[str, str]) -> str:
    """Flame expands an app environment value only when every variable in it is known."""
    names = re.findall(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", value)
    if all((a or b) in env for a, b in names):
        return expand(value, env)
    return value
