"""The shim calls of an instance's life: enter its session, run one task and record its outcome.

Failures are told the way Flame tells them: a failed bind carries Flame's bind return code
(``common/src/apis/types.rs``), a lost instance fails its task with how the process ended.
"""

from __future__ import annotations

from collections.abc import Callable

from flamepy.proto import shim_pb2

from flame_local.executors.instances import SHIM_ERRORS, InstanceProcess
from flame_local.state import Application, Session, Store, Task

__all__ = ["RC_ENTER_FAILED", "RC_INSTALL_FAILED", "RC_SHIM_FAILED", "BindError", "enter_session", "run_task"]

# Flame's bind return codes (common/src/apis/types.rs).
RC_INSTALL_FAILED = 10
RC_SHIM_FAILED = 11
RC_ENTER_FAILED = 12


class BindError(Exception):
    """A bind step failed; ``rc`` is Flame's bind return code, ``detail`` the reason."""

    def __init__(self, rc: int, detail: str):
        super().__init__(detail)
        self.rc = rc
        self.detail = detail


def enter_session(proc: InstanceProcess, app: Application, ssn: Session, timeout: float) -> None:
    """``OnSessionEnter`` on a started instance; BindError (and the process stopped) if it fails."""
    ctx = shim_pb2.SessionContext(
        session_id=ssn.id,
        application=shim_pb2.ApplicationContext(
            name=app.name,
            shim=app.spec.shim,
            image=app.spec.image if app.spec.HasField("image") else None,
            command=app.spec.command if app.spec.HasField("command") else None,
            working_directory=app.spec.working_directory if app.spec.HasField("working_directory") else None,
            url=app.spec.url if app.spec.HasField("url") else None,
            installer=app.spec.installer if app.spec.HasField("installer") else None,
        ),
    )
    if ssn.spec.common_data is not None:
        ctx.common_data = ssn.spec.common_data
    try:
        result = proc.enter(ctx, timeout=timeout)
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


def run_task(
    store: Store, executor_id: str, proc: InstanceProcess, task: Task, stop_grace: Callable[[], float]
) -> bool:
    """Run one task on ``proc`` and complete it in ``store``; return False when the instance is
    gone and must be replaced.  ``stop_grace()`` is the grace period of a stop in progress."""
    ctx = shim_pb2.TaskContext(task_id=str(task.id), session_id=task.session_id)
    if task.input is not None:
        ctx.input = task.input
    try:
        result = proc.invoke(ctx)
    except SHIM_ERRORS as e:
        proc.wait_exit(0.5)  # let the process finish dying so we can say how it ended
        if proc.ended_by_runtime:
            store.complete_task(
                task,
                False,
                None,
                f"the flame-local runtime stopped: task {task.id} of session {task.session_id} was still "
                f"running after the {stop_grace():g} s grace period and was ended",
            )
        elif proc.alive():
            detail = e.details() if hasattr(e, "details") else str(e)
            store.complete_task(task, False, None, f"instance {executor_id} transport error: {detail}")
        else:
            store.complete_task(
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
    store.complete_task(task, ok, output, message or (None if ok else "Task failed with state <Failed>"))
    return True
