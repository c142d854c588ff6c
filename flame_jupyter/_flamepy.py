"""The one module that touches flamepy's internals (private attributes of its Runner, services,
futures and connection), so a flamepy upgrade has one place to look.

flamepy 0.6.0 is the reference client: flame_jupyter uses its Runner for packaging and
registration, its services for sessions and tasks, and its futures as the base of
:class:`~flame_jupyter.futures.ObjectFuture`. What it does not make public is reached here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

_cwd_lock = threading.Lock()


@contextlib.contextmanager
def _empty_cwd() -> Iterator[None]:
    """flamepy's Runner packages the working directory; notebook code travels captured instead,
    so give it an empty one (a notebook's directory may hold gigabytes of data). flamepy reads
    the process's working directory, so it is changed for the moment of the call (under a lock)."""
    with _cwd_lock:
        old = os.getcwd()
        tmp = tempfile.mkdtemp(prefix="flame-jupyter-pkg-")
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)
            shutil.rmtree(tmp, ignore_errors=True)


def new_runner(name: str, *, dependencies: list[str] | None, python_version: str | None) -> Any:
    """A ``flamepy.runner.Runner`` that packages nothing of the notebook's directory."""
    from flamepy.runner import Runner

    install_deadlines()
    with _empty_cwd():
        return Runner(name, dependencies=dependencies, python_version=python_version)


def session_of(service: Any) -> Any:
    """The flamepy session behind a flamepy Runner service."""
    return service._session


def forget_service(runner: Any, service: Any) -> None:
    """flamepy's Runner keeps every service to close it again at the end: drop a closed one (a
    long notebook opens many; closing one twice fails once the runtime has forgotten it)."""
    with contextlib.suppress(AttributeError, ValueError):
        runner._services.remove(service)


def inner_future(future: Any) -> Any:
    """The ``concurrent.futures.Future`` inside a flamepy ``ObjectFuture``."""
    return future._future


def task_id_of(future: Any) -> str | None:
    """The Flame task id a flamepy ``ObjectFuture`` stands for, when flamepy recorded it."""
    return getattr(future._future, "_task_id", None)


def tag_task(inner: Any, task_id: str | None) -> None:
    """Record on a concurrent Future the Flame task it stands for (as flamepy's own futures do)."""
    inner._task_id = task_id


def reset_connection() -> None:
    """Make flamepy read its configuration again: its frontend connection and the object-cache
    context it caches separately (else the next call goes to the old cache)."""
    from flamepy.core import cache
    from flamepy.core.client import ConnectionInstance

    with ConnectionInstance._lock:
        ConnectionInstance._connection = None
        ConnectionInstance._context = None
    with cache._context_cache_lock:
        cache._context_cache = None


def flight_client(endpoint: str) -> Any:
    """The one Arrow Flight client per cache endpoint: flamepy's pooled client, with flamepy's
    TLS settings (``~/.flame/flame.yaml`` or ``FLAME_CA_FILE``...)."""
    from flamepy.core import cache

    return cache._get_flight_client(endpoint, cache._get_cache_tls_config())


def read_since(endpoint: str, key: str, version: int) -> tuple[int, list[Any], bool] | None:
    """The patches of a cached object past ``version``: ``(new version, patches, full)``, where
    ``full`` means the reply was the whole object (its base left out, every patch in); None when
    nothing is new. Unlike ``get_object``, nothing is kept in flamepy's client-side cache (a call's
    output stream would be held there a second time)."""
    from flamepy.core import ObjectRef, cache

    result = cache._fetch_object_data(ObjectRef(endpoint=endpoint, key=key, version=version), version)
    if result is None:
        return None
    full = result.mode == cache.FetchMode.FULL
    return result.version, [patch.data for patch in result.patches], full


def decode_cache_data(data: bytes) -> Any:
    """Decode an object-cache value in one of flamepy's own formats (Arrow tables, arrays)."""
    from flamepy.core.cache import _deserialize_object_data

    return _deserialize_object_data(data)


# -- owned sessions and cleanup (flame_jupyter.cleanup) ---------------------------------------------
# flamepy's Runner.close closes every service, deletes every ``<app>/*`` cache object and
# unregisters the app, but only when this Runner registered it, and stops at nothing: wrong for
# two Runners sharing one app name, and it cannot name the sessions it opens. These functions
# let flame_jupyter open sessions with ids of its own and do the cleanup itself.
_next_session_id = threading.local()
_owned_class: Any = None


def _install_session_id_hook() -> None:
    """flamepy's RunnerService names its session ``short_name(app)`` unless the execution object
    carries a ``SessionContext`` (which shared objects such as the cell service cannot): while an
    owned Runner opens a service, that name is the id it chose; everyone else is unaffected."""
    from flamepy.runner import runner as fr

    if getattr(fr.short_name, "_fj_hook", False):
        return
    original = fr.short_name

    def short_name(prefix: str, length: int = 6) -> str:
        chosen = getattr(_next_session_id, "value", None)
        if chosen is not None:
            _next_session_id.value = None
            return chosen
        return original(prefix, length)

    short_name._fj_hook = True  # type: ignore[attr-defined]
    fr.short_name = short_name


def new_owned_runner(
    name: str,
    *,
    dependencies: list[str] | None,
    python_version: str | None,
    session_id: Any,
) -> Any:
    """As :func:`new_runner`, but every service's session id is ``session_id()`` (a callable),
    unless the served object names its own (``_session_context``)."""
    global _owned_class
    from flamepy.runner import Runner

    _install_session_id_hook()
    install_deadlines()
    if _owned_class is None:

        class OwnedRunner(Runner):  # type: ignore[misc]
            _fj_session_id: Any = None

            def service(self, execution_object: Any, *args: Any, **kwargs: Any) -> Any:
                _next_session_id.value = self._fj_session_id()
                try:
                    svc = super().service(execution_object, *args, **kwargs)
                finally:
                    _next_session_id.value = None
                self._fj_opened.append(svc._session.id)
                return svc

        _owned_class = OwnedRunner
    with _empty_cwd():
        runner = _owned_class(name, dependencies=dependencies, python_version=python_version)
    runner._fj_session_id = session_id
    runner._fj_opened = []
    return runner


def opened_sessions(runner: Any) -> list[str]:
    """Every session an owned Runner opened (closed ones too: their objects stay until the end)."""
    return list(getattr(runner, "_fj_opened", ()))


def open_services(runner: Any) -> list[Any]:
    """The flamepy services a flamepy Runner still holds (services and cell services)."""
    return list(getattr(runner, "_services", ()))


def registered_app(runner: Any) -> bool:
    """True when this flamepy Runner registered its application (it did not exist before)."""
    return bool(getattr(runner, "_app_registered", False))


def disown(runner: Any) -> None:
    """Make flamepy's own ``Runner.close`` a no-op: flame_jupyter cleaned up instead."""
    runner._services = []
    runner._app_registered = False
    runner._started = False


def delete_package(name: str) -> None:
    """Delete the package flamepy's Runner uploaded for application ``name`` (``<name>.tar.gz``
    in the configured storage: the object cache, or ``package.storage``)."""
    from flamepy.core.types import FlameContext
    from flamepy.runner.storage import create_storage_backend

    ctx = FlameContext()
    storage = ctx.package.storage if ctx.package else None
    create_storage_backend(storage, app_name=name).delete(f"{name}.tar.gz")


def failure_text(session: Any, task_id: str | None) -> str | None:
    """The message of a failed task's last failure event, read with GetTask.

    Flame v0.6.0's WatchTask sends the task without its events (``Controller::watch_task``), so
    flamepy's future reports "Task failed without error message"; GetTask attaches them.
    None when the task, its failure event or the runtime cannot be reached.
    """
    if session is None or not task_id:
        return None
    try:
        task = session.get_task(task_id)
    except Exception:  # noqa: BLE001 - no better text than flamepy's then
        return None
    for event in reversed(task.events or []):
        if int(event.code) == 3 and event.message:  # 3: TaskState.FAILED, Flame's failure event
            return str(event.message)
    return None


# -- deadlines (flame_jupyter.watchdog) --------------------------------------------------------------
DEADLINE_ENV = "FLAME_JUPYTER_DEADLINE"
DEFAULT_DEADLINE = 30.0


def deadline() -> float:
    """Seconds a unary Flame call may take before it counts as unanswered (``FLAME_JUPYTER_DEADLINE``)."""
    try:
        return max(0.1, float(os.environ.get(DEADLINE_ENV, DEFAULT_DEADLINE)))
    except ValueError:
        return DEFAULT_DEADLINE


def endpoint() -> str:
    """The frontend flamepy talks to now (for error messages)."""
    from flamepy.core.client import ConnectionInstance

    conn = ConnectionInstance._connection
    return str(getattr(conn, "addr", None) or os.environ.get("FLAME_ENDPOINT", "?"))


def _not_answering_class() -> type:
    import grpc

    class NotAnswering(grpc.RpcError):  # type: ignore[misc]
        """A unary call past its deadline, with the words flamepy passes on (``details()``)."""

        def __init__(self, method: str, seconds: float) -> None:
            name = method.rsplit("/", 1)[-1]
            super().__init__(not_answering(f"no answer to {name} within {seconds:g} s"))
            self._details = str(self.args[0])

        def code(self) -> Any:
            return grpc.StatusCode.DEADLINE_EXCEEDED

        def details(self) -> str:
            return self._details

    return NotAnswering


def not_answering(what: str) -> str:
    """The one wording of an unresponsive Flame."""
    return f"Flame is not answering (endpoint {endpoint()}): {what} (the deadline is {DEADLINE_ENV})"


def install_deadlines() -> None:
    """Give every unary call of flamepy's frontend stubs (CreateTask, GetTask, OpenSession, ...)
    the deadline :func:`deadline`, unless it set one; past it the call fails with
    :func:`not_answering`'s words. Streams (WatchTask) keep none: waiting for a running task
    is fine. Applies to the current flamepy connection and to every later one."""
    import collections

    import grpc
    from flamepy.core import client

    if getattr(client.FrontendStub, "_fj_deadline", False):
        return
    not_answering_error = _not_answering_class()
    fields = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")

    class Details(collections.namedtuple("Details", fields), grpc.ClientCallDetails):  # type: ignore[misc]
        pass

    class Deadline(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            if details.timeout is not None:
                return continuation(details, request)
            seconds = deadline()
            call = continuation(
                Details(
                    *(getattr(details, f, None) for f in fields[:1]),
                    seconds,
                    *(getattr(details, f, None) for f in fields[2:]),
                ),
                request,
            )
            if call.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                method = details.method.decode() if isinstance(details.method, bytes) else details.method
                raise not_answering_error(str(method), seconds)
            return call

    original = client.FrontendStub

    def stub(channel: Any) -> Any:
        return original(grpc.intercept_channel(channel, Deadline()))

    stub._fj_deadline = True  # type: ignore[attr-defined]
    client.FrontendStub = stub
    conn = client.ConnectionInstance._connection
    if conn is not None:
        conn._frontend = stub(conn._channel)


def session_events(session: Any, timeout: float) -> list[tuple[int, str]]:
    """``(code, message)`` of a session's events, read with GetSession within ``timeout`` s.
    Raises ``grpc.RpcError`` when Flame does not answer in time or at all."""
    from flamepy.proto.frontend_pb2 import GetSessionRequest

    response = session.connection._frontend.GetSession(
        GetSessionRequest(session_id=session.id), timeout=timeout
    )
    return [(int(ev.code), str(ev.message or "")) for ev in response.status.events]


def fail_inner(future: Any, exc: BaseException) -> None:
    """End a flamepy ``ObjectFuture``'s inner concurrent Future with ``exc`` (no-op once done);
    flamepy's own watch may still report later, which then changes nothing."""
    import concurrent.futures

    inner = future._future
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        inner.set_exception(exc)
