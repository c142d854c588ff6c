"""Close what a Runner (or a dead kernel) left on Flame, in a way a real cluster accepts.

Flame v0.6.0 refuses to close a session with running tasks ("Cannot close session with running
tasks") and to unregister an application with open sessions. So cleanup cancels first: every
live call of the sessions (their futures), then every task Flame still lists as running (its
cancel key is read from the task's input, nothing is unpickled), and retries the close until
the sessions close or a bounded time (10 s) has passed. Then it deletes the sessions' cache
objects (``<app>/<session>``) and the Runner's own shared objects (``<app>/<runner key>``), and
unregisters the application and deletes its package only when no other session of it is open
and no other open Runner of this process uses it (a kernel's Runners of one environment share
one application). Nothing stops at the first failure: what
could not be closed is listed in a :class:`Report` (and raised as :class:`CleanupError`).

:func:`leftovers` finds the open sessions that a dead kernel on this host left (see
:mod:`flame_jupyter.identity`); :func:`close_leftovers` closes them (``%flame cleanup``, and
every ``%load_ext``).
"""

from __future__ import annotations

import atexit
import re
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flame_jupyter import identity
from flame_jupyter.errors import FlameJupyterError
from flame_jupyter.future_state import state_of

#: Seconds a cleanup waits in all for cancelled tasks to end before it reports them.
CLOSE_TIMEOUT = 10.0
#: Seconds the exit-time cleanup takes at most: jupyter_client kills a kernel 5 s after asking it
#: to shut down (``shutdown_wait_time``; SIGTERM at half of it, which the cleanup defers).
EXIT_BUDGET = 4.0
#: At exit, a cancelled call's code gets this long to stop before the executor abandons it (its
#: task ends at once, so Flame lets the session close); otherwise the executor's own 3 s.
EXIT_CANCEL_GRACE = 0.2
_cancel_grace: float | None = None  # EXIT_CANCEL_GRACE once the exit cleanup runs
_CANCEL_ID = re.compile(rb"fj-([0-9a-f]{1,64})-cancel")


class CleanupError(FlameJupyterError):
    """Some sessions, objects or the application could not be closed; ``report`` lists them."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.failure_message())
        self.report = report


@dataclass
class Report:
    """What a cleanup closed, and what it could not (each with Flame's reason)."""

    closed: list[str] = field(default_factory=list)
    failed_sessions: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def merge(self, other: Report) -> Report:
        self.closed += other.closed
        self.failed_sessions += other.failed_sessions
        self.unregistered += other.unregistered
        self.problems += other.problems
        return self

    def failure_message(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return (
            f"flame_jupyter could not close everything on Flame:\n{lines}\n"
            "Run `%flame cleanup` (or flame_jupyter.cleanup.close_leftovers()) to retry, or close them "
            "with flmctl."
        )

    def raise_if_failed(self) -> None:
        if self.problems:
            raise CleanupError(self)


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _cache_endpoint() -> str | None:
    from flame_jupyter import connection

    conn = connection.current()
    return conn.cache_endpoint if conn is not None else None


def cancel_running_tasks(session_id: str, app: str, already: set[str]) -> None:
    """Ask every task Flame lists as running in the session to stop (its cancel key)."""
    from flamepy.core import ObjectRef, update_object
    from flamepy.core.client import get_session
    from flamepy.core.types import TaskState

    from flame_jupyter.calls import cancel_request

    endpoint = _cache_endpoint()
    if endpoint is None:
        return
    try:
        tasks = list(get_session(session_id).list_tasks())
    except Exception:  # noqa: BLE001 - the close retry reports what stays open
        return
    for task in tasks:
        if task.state != TaskState.RUNNING:
            continue
        for call_id in {m.decode() for m in _CANCEL_ID.findall(task.input or b"")}:
            key = f"{app}/{session_id}/fj-{call_id}-cancel"
            if key in already:
                continue
            already.add(key)
            try:
                update_object(ObjectRef(endpoint=endpoint, key=key, version=0), cancel_request(_cancel_grace))
            except Exception:  # noqa: BLE001 - as above
                pass


def close_sessions(
    sessions: dict[str, str], futures: Iterable[Any] = (), timeout: float = CLOSE_TIMEOUT
) -> Report:
    """Cancel ``futures``, then close every session (id -> app), retrying while tasks still run."""
    from flamepy.core.client import close_session

    for fut in futures:
        try:
            if _cancel_grace is not None and not fut.done():
                state_of(fut).request_cancel(_cancel_grace)  # then fut.cancel() sends no other
            fut.cancel()
        except Exception:  # noqa: BLE001 - the session close below says what stays open
            pass
    report = Report()
    errors: dict[str, str] = {}
    pending = dict(sessions)
    cancelled: set[str] = set()
    deadline = time.monotonic() + timeout
    while pending:
        for sid, app in list(pending.items()):
            try:
                close_session(sid)
            except Exception as e:  # noqa: BLE001 - reported
                msg = _message(e)
                if "not found" in msg.lower():
                    del pending[sid]  # already gone: nothing to close
                    continue
                errors[sid] = msg
                if "running tasks" in msg:
                    cancel_running_tasks(sid, app, cancelled)
                else:
                    del pending[sid]
                continue
            del pending[sid]
            errors.pop(sid, None)
            report.closed.append(sid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for sid, msg in errors.items():
        still = f" (its tasks did not stop within {timeout:g} s)" if sid in pending else ""
        report.failed_sessions.append(sid)
        report.problems.append(f"session {sid} of {sessions[sid]!r}: {msg}{still}")
    return report


def delete_objects(prefixes: Iterable[str]) -> Report:
    """Delete the cache objects under each ``<app>/<part>`` prefix."""
    from flamepy.core.cache import delete_objects as delete

    report = Report()
    for prefix in prefixes:
        try:
            delete(prefix)
        except Exception as e:  # noqa: BLE001 - reported
            report.problems.append(f"cache objects {prefix}/*: {_message(e)}")
    return report


def open_sessions_of(app: str) -> list[Any] | None:
    """The open sessions of ``app`` (None if Flame cannot be asked)."""
    from flamepy.core.client import list_sessions
    from flamepy.core.types import SessionState

    try:
        return [s for s in list_sessions() if s.application == app and s.state == SessionState.OPEN]
    except Exception:  # noqa: BLE001 - the caller reports
        return None


def release_app(app: str) -> Report:
    """Unregister ``app`` and delete its package, unless another session of it is still open."""
    from flamepy.core.client import get_application, unregister_application

    from flame_jupyter import _flamepy

    report = Report()
    others = open_sessions_of(app)
    if others:
        return report  # another Runner (another kernel) uses it; the last one unregisters it
    try:
        if get_application(app) is None:
            return report
        unregister_application(app)
    except Exception as e:  # noqa: BLE001 - reported unless another user opened a session meanwhile
        msg = _message(e)
        if "has open sessions" not in msg and "not found" not in msg.lower():
            report.problems.append(f"application {app!r}: {msg}")
        return report
    report.unregistered.append(app)
    try:
        _flamepy.delete_package(app)
    except Exception as e:  # noqa: BLE001 - reported
        report.problems.append(f"package of {app!r}: {_message(e)}")
    return report


def close_owned(
    app: str,
    open_ids: Iterable[str],
    *,
    futures: Iterable[Any] = (),
    objects_of: Iterable[str] | None = None,
    shared_prefix: str | None = None,
    release: bool = False,
    timeout: float = CLOSE_TIMEOUT,
) -> Report:
    """Close the sessions ``open_ids`` (cancelling ``futures`` first). Once all closed: delete
    the objects of the sessions ``objects_of`` and under ``shared_prefix``, and, with
    ``release``, unregister the app if nobody else has a session of it open."""
    report = close_sessions(dict.fromkeys(open_ids, app), futures, timeout)
    if report.failed_sessions:
        return report
    if objects_of is not None:
        report.merge(delete_objects(f"{app}/{sid}" for sid in dict.fromkeys(objects_of)))
    if shared_prefix is not None:
        report.merge(delete_objects([shared_prefix]))
    if release:
        report.merge(release_app(app))
    return report


@dataclass
class Leftover:
    """An open session a dead kernel on this host left."""

    session_id: str
    app: str
    kernel: identity.KernelId
    runner_key: str
    pending: int
    running: int

    def __str__(self) -> str:
        return (
            f"{self.session_id}  app {self.app!r}  left by {self.kernel.describe()}  "
            f"(pending {self.pending}, running {self.running})"
        )


def leftovers() -> list[Leftover]:
    """Open sessions whose kernel (on this host) is gone."""
    from flamepy.core.client import list_sessions
    from flamepy.core.types import SessionState

    found = []
    for s in list_sessions():
        parsed = identity.parse(s.id) if s.state == SessionState.OPEN else None
        if parsed is not None and identity.is_dead(parsed[0]):
            found.append(Leftover(s.id, s.application, parsed[0], parsed[1], s.pending, s.running))
    return found


def close_leftovers(found: list[Leftover] | None = None, timeout: float = CLOSE_TIMEOUT) -> Report:
    """Close the sessions dead kernels left, their objects, and each app nobody else uses."""
    found = leftovers() if found is None else found
    report = close_sessions({lo.session_id: lo.app for lo in found}, (), timeout)
    closed = set(report.closed)
    report.merge(delete_objects(f"{lo.app}/{lo.session_id}" for lo in found if lo.session_id in closed))
    report.merge(delete_objects(sorted({f"{lo.app}/{lo.runner_key}" for lo in found})))
    for app in sorted({lo.app for lo in found}):
        report.merge(release_app(app))
    return report


def cleanup_leftovers(dry_run: bool = False, *, quiet: bool = False, out: Any = None) -> Report | None:
    """List (``dry_run``) or close what dead kernels on this host left, printing what happened
    (``%flame cleanup``; every ``%load_ext`` runs it with ``quiet``: silent when nothing is left)."""
    import sys

    out = out or sys.stdout
    found = leftovers()
    if not found:
        if not quiet:
            print("flame_jupyter: nothing left on Flame by dead kernels on this host", file=out)
        return None
    print(f"flame_jupyter: {len(found)} session(s) left on Flame by dead kernels on this host:", file=out)
    for lo in found:
        print(f"  {lo}", file=out)
    if dry_run:
        print("(--dry-run: nothing closed; `%flame cleanup` closes them)", file=out)
        return None
    report = close_leftovers(found)
    apps = f"; unregistered {', '.join(repr(a) for a in report.unregistered)}" if report.unregistered else ""
    print(f"flame_jupyter: closed {len(report.closed)} session(s){apps}", file=out)
    if report.problems:
        print(report.failure_message(), file=sys.stderr)
    return report


# -- at exit ----------------------------------------------------------------------------------------
_open_runners: weakref.WeakSet[Any] = weakref.WeakSet()
_exit_hook = False


def close_at_exit(runner: Any) -> None:
    """Close ``runner`` when the process ends, unless it was closed before.

    The close runs when the main thread ends, before Python joins the other threads: flamepy's
    watch threads wait for their tasks, so a cleanup left to ``atexit`` would wait for running
    calls (forever, for a loop) instead of cancelling them (kernel restart/exit, Ctrl-C in a
    script). It is registered after flamepy's thread pool, so it runs before that pool's join.
    """
    global _exit_hook
    _open_runners.add(runner)
    if _exit_hook:
        return
    _exit_hook = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_open_runners)
        except RuntimeError:  # already shutting down: atexit below still runs
            pass


def used_by_another_runner(runner: Any) -> bool:
    """Does another open Runner of this process use ``runner``'s application (one app per kernel
    and environment)? Then closing ``runner`` leaves the app and its package to the last one."""
    return any(r is not runner and r.name == runner.name and not r.closed for r in list(_open_runners))


@contextmanager
def sigterm_ignored() -> Iterator[None]:
    """Ignore SIGTERM for the block (main thread only): a kernel's shutdown sends it 2.5 s after
    the shutdown request, while the exit cleanup may still wait for a cancelled call to end;
    jupyter_client's SIGKILL at the end of its window stays the hard stop."""
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        except (ValueError, OSError):  # no signals here (an embedded interpreter)
            previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@atexit.register
def _close_open_runners() -> None:
    """Close every Runner still open within :data:`EXIT_BUDGET` s in all, SIGTERM ignored and
    cancelled code abandoned after :data:`EXIT_CANCEL_GRACE`; say what failed (never raise)."""
    global _cancel_grace
    runners = [r for r in list(_open_runners) if not getattr(r, "closed", True)]
    if not runners:
        return
    _cancel_grace = EXIT_CANCEL_GRACE
    deadline = time.monotonic() + EXIT_BUDGET
    with sigterm_ignored():
        for runner in runners:
            try:
                runner.close(timeout=max(0.5, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001 - interpreter shutdown
                print(f"flame_jupyter: at exit, Runner {runner.name!r}: {e}", file=sys.stderr)
