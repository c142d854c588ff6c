"""The plain Python API: flamepy's Runner, for notebook objects, returning live futures.

Example
-------
>>> import flame_jupyter as fj
>>> def sum_fn(a, b):
...     return a + b
>>> with fj.Runner("my-app") as rr:            # doctest: +SKIP
...     print(rr.service(sum_fn)(1, 3).get())
4

``Runner`` is a thin layer over ``flamepy.runner.Runner``: the same application, sessions and
tasks, the stock ``flmrun`` service on the executors. What it adds: notebook-defined code is
captured (:mod:`flame_jupyter.capture`), every call sees the notebook's current globals, and calls
return :class:`~flame_jupyter.futures.ObjectFuture` (state, output, progress, cancel, display).
``%%flame`` cells run through :mod:`flame_jupyter.cells`.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import uuid
from typing import Any

from flame_jupyter import _flamepy, cleanup, identity, live_state, pipes
from flame_jupyter import futures as _futures
from flame_jupyter.calls import CallChannel
from flame_jupyter.capacity import check_resources
from flame_jupyter.capture import Captured, Capturer, FlameObjectStore
from flame_jupyter.capture.arguments import TOO_LARGE_ADVICE, too_large
from flame_jupyter.connection import ensure_connected
from flame_jupyter.errors import FlameJupyterError, explain
from flame_jupyter.failure_events import decoder as failure_decoder
from flame_jupyter.future_state import FutureState
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.maps import MapFuture, start_map
from flame_jupyter.registry import ServiceInfo, registry
from flame_jupyter.remote.wire import CHUNK_KWARG, EXPECT_KWARG, METHOD_KWARG
from flame_jupyter.service_ref import register_service
from flame_jupyter.tracker import tracker

_process_tag: tuple[int, str] | None = None


def default_app_name(dependencies: list[str] | None = None, python_version: str | None = None) -> str:
    """One application name per user, process and environment: ``fj-<user>-<pid>-<rand>``, plus
    ``-<hash>`` of the dependencies and python version when there are any. Every Runner of a
    kernel with the same environment shares that application and its installed package."""
    global _process_tag
    if _process_tag is None or _process_tag[0] != os.getpid():
        _process_tag = (os.getpid(), uuid.uuid4().hex[:4])
    user = re.sub(r"[^A-Za-z0-9]", "", getpass.getuser())[:16] or "user"
    name = f"fj-{user}-{_process_tag[0]}-{_process_tag[1]}"
    if dependencies or python_version:
        env = "\n".join([python_version or "", *sorted(dependencies or ())])
        name += "-" + hashlib.sha256(env.encode()).hexdigest()[:6]
    return name


def check_servable(obj: Any, name: str | None = None) -> None:
    """A service serves a function, a class, or an instance with public methods of a class
    that is not a builtin type (``42``, ``None``, a list: an error, before anything is sent)."""
    if callable(obj) or isinstance(obj, Captured):
        return
    from flame_jupyter.capture import _public_methods

    if type(obj).__module__ == "builtins" or not _public_methods(obj):
        what = name or repr(obj)[:60]
        raise FlameJupyterError(
            f"cannot serve {what} ({type(obj).__name__}): a service needs a function, a class, or an "
            "instance of your own class with public methods. Nothing was sent."
        )


def flame_error(action: str, exc: Exception) -> FlameJupyterError:
    """A flamepy failure as the user's error: what was being done, Flame's message, the fix."""
    message = getattr(exc, "message", None) or str(exc)
    advice = explain(message)
    return FlameJupyterError(f"{action}: {message}" + (f"\n{advice}" if advice else ""))


class Runner:
    """Serve notebook functions, classes and instances on Flame.

    Parameters
    ----------
    name
        The Flame application name (default: unique per process).
    dependencies
        pip requirements the executors need (as flamepy's Runner).
    capturer
        The capture settings (threshold for large values, ...).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        dependencies: list[str] | None = None,
        python_version: str | None = None,
        capturer: Capturer | None = None,
    ) -> None:
        conn = ensure_connected()
        self.name = name or default_app_name(dependencies, python_version)
        self.cache_endpoint = conn.cache_endpoint
        # This Runner's own name part: its sessions are <app>-<key>-<n>, its shared objects live
        # under <app>/<key>; so it cleans exactly what it made (another Runner may share the app).
        self._key = identity.new_runner_key()
        self._shared_prefix = f"{self.name}/{self._key}"
        try:
            self._runner = _flamepy.new_owned_runner(
                self.name,
                dependencies=dependencies,
                python_version=python_version,
                session_id=lambda: identity.new_session_id(self.name, self._key),
            )
        except Exception as e:
            raise flame_error(f"cannot set up Flame application {self.name!r}", e) from None
        self.capturer = capturer or Capturer(store=FlameObjectStore(key_prefix=self._shared_prefix))
        self.services: list[Service] = []
        self._closed = False
        cleanup.close_at_exit(self)

    def service(
        self,
        obj: Any,
        *,
        name: str | None = None,
        snapshot: bool = False,
        autoscale: bool | None = None,
        warmup: int = 0,
        resources: Any = None,
    ) -> Service:
        """A remote service from a function, class (instantiated remotely) or instance.

        Calls return :class:`ObjectFuture`. ``snapshot=True`` freezes the notebook globals the
        code uses now; by default every call sends their current values.
        """
        if self._closed:
            raise FlameJupyterError(f"Runner {self.name!r} is closed")
        check_servable(obj, name)
        check_resources(resources, f"service {name or getattr(obj, '__name__', type(obj).__name__)!r}")
        captured = (
            obj if isinstance(obj, Captured) else self.capturer.capture(obj, snapshot=snapshot, name=name)
        )
        try:
            options, served = {"autoscale": autoscale, "warmup": warmup}, captured.execution_object
            if captured.kind == "instance":  # kept live in one instance (flame_jupyter/live_state.py)
                options, served = live_state.registration(autoscale, warmup), captured.live_object
            fp = self._runner.service(served, **options, resreq=resources)
        except Exception as e:
            raise flame_error(f"cannot start service {name or captured.name!r}", e) from None
        svc = Service(self, captured, fp, name or captured.name)
        self.services.append(svc)
        return svc

    # -- many futures ---------------------------------------------------------------------------------
    get = staticmethod(_futures.get)
    ref = staticmethod(_futures.ref)
    wait = staticmethod(_futures.wait)
    select = staticmethod(_futures.select)
    as_completed = staticmethod(_futures.as_completed)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self, timeout: float = cleanup.CLOSE_TIMEOUT) -> None:
        """Cancel this Runner's running and queued calls, close its sessions (waiting up to
        ``timeout`` s in all for the calls to end), delete its cached objects, and unregister
        the application unless another Runner (another kernel) still has a session of it open.

        Raises :class:`~flame_jupyter.cleanup.CleanupError` listing what could not be closed;
        the Runner then stays open and ``close()`` again retries the rest.
        """
        if self._closed:
            return
        fps = _flamepy.open_services(self._runner)
        ids = {_flamepy.session_of(fp).id: fp for fp in fps}
        report = cleanup.close_owned(
            self.name,
            list(ids),
            futures=[f for f in registry.live_futures() if f.session_id in ids],
            objects_of=_flamepy.opened_sessions(self._runner),
            shared_prefix=self._shared_prefix,
            release=not cleanup.used_by_another_runner(self),
            timeout=timeout,
        )
        for sid, fp in ids.items():
            if sid not in report.failed_sessions:
                registry.close_service(sid)
                for svc in [s for s in self.services if s._fp is fp]:
                    svc.closed = True
                forget(self, fp)
        if not report.failed_sessions:
            self._closed = True
            _flamepy.disown(self._runner)  # flamepy's own close would delete other Runners' objects
        report.raise_if_failed()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<flame_jupyter.Runner {self.name!r} services={len(self.services)}{' closed' if self._closed else ''}>"


class Service:
    """A remote service. Call it (functions) or its methods (classes, instances) to get futures."""

    def __init__(self, runner: Runner, captured: Captured, flamepy_service: Any, name: str) -> None:
        self._runner = runner
        self._captured = captured
        self._fp = flamepy_service
        self.name = name
        self.kind = captured.kind
        self.app = runner.name
        self.session_id = _flamepy.session_of(flamepy_service).id
        self.methods = tuple(captured.state.get("methods", ()))
        self.closed = False
        self._live = live_state.LiveState() if self.kind == "instance" else None
        self._pipe = pipes.CallPipe(_flamepy.session_of(flamepy_service), runner)
        registry.add_service(
            ServiceInfo(name=name, kind=self.kind, app=self.app, session_id=self.session_id, handle=self)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> ObjectFuture:
        if self.kind in ("class", "instance"):
            raise TypeError(
                f"service {self.name!r} serves a {self.kind}; call one of its methods: {', '.join(self.methods) or '(none)'}"
            )
        return self.submit(None, args, kwargs)

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self.__dict__.get("methods", ()):
            raise AttributeError(f"service {self.__dict__.get('name')!r} has no method {method!r}")

        def call(*args: Any, **kwargs: Any) -> ObjectFuture:
            return self.submit(method, args, kwargs)

        call.__name__ = method
        call.map = lambda *its, **kw: start_map(self, method, its, **kw)  # type: ignore[attr-defined]
        call.starmap = lambda it, **kw: start_map(self, method, (it,), star=True, **kw)  # type: ignore[attr-defined]
        return call

    def map(self, *iterables: Any, **kwargs: Any) -> MapFuture:
        """One call per item of ``zip(*iterables)`` as one group future (:mod:`flame_jupyter.maps`)."""
        return start_map(self, None, iterables, **kwargs)

    def starmap(self, iterable: Any, **kwargs: Any) -> MapFuture:
        """As :meth:`map`, each item a tuple of arguments (methods: ``svc.method.map/starmap``)."""
        return start_map(self, None, (iterable,), star=True, **kwargs)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.methods]

    def submit(
        self, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any], *, label: str | None = None
    ) -> ObjectFuture:
        """Send one call (one Flame task); the one execution path behind every call."""
        if self._live is None:
            return self._send(method, args, kwargs, label=label)
        sent = self._live.expect()  # an instance service: the live state this call expects
        fut = self._send(method, args, kwargs, label=label, expect=sent)
        self._live.follow(fut, sent)
        return fut

    def _send(
        self,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        label: str | None = None,
        expect: tuple[int, int] | None = None,
    ) -> ObjectFuture:
        if self.closed:
            raise FlameJupyterError(f"service {self.name!r} is closed")
        # Large arguments of any type go to the object cache once, by content (Flame caps a task
        # message at 4 MiB); notebook code inside them travels with its globals.
        new_args, new_kwargs = self._captured.prepare_call(args, kwargs)
        if method is not None and self.kind in ("function", "instance"):  # a callable, a live instance
            new_kwargs[METHOD_KWARG] = method
            if expect is not None:
                new_kwargs[EXPECT_KWARG] = expect
            target = self._fp
        else:
            target = self._fp if method is None else getattr(self._fp, method)
        what = self.name if method is None else f"{self.name}.{method}"

        def alone() -> ObjectFuture:
            try:
                return launch(
                    self._runner,
                    self._fp,
                    target,
                    new_args,
                    new_kwargs,
                    service=self.name,
                    label=label or what,
                    action=f"cannot submit a call to {self.name!r}",
                )
            except FlameJupyterError as e:
                if too_large(str(e)):
                    raise FlameJupyterError(f"{e}\n{TOO_LARGE_ADVICE}") from None
                raise

        if CHUNK_KWARG in new_kwargs:  # a map's chunk: the map paces its own tasks
            return alone()
        return self._pipe.submit(alone, target, new_args, new_kwargs, label=label or what, service=self.name)

    def close(self, timeout: float = cleanup.CLOSE_TIMEOUT) -> None:
        """Cancel the service's running and queued calls and close its session (waiting up to
        ``timeout`` s for the calls to end). Its finished results stay fetchable until the
        Runner closes. Raises :class:`~flame_jupyter.cleanup.CleanupError` if the session
        could not be closed; the service then stays open and ``close()`` again retries."""
        if self.closed:
            return
        report = cleanup.close_owned(
            self.app,
            [self.session_id],
            futures=[f for f in registry.live_futures() if f.session_id == self.session_id],
            timeout=timeout,
        )
        report.raise_if_failed()
        self.closed = True
        registry.close_service(self.session_id)
        forget(self._runner, self._fp)

    def __repr__(self) -> str:
        return f"<flame_jupyter.Service {self.name!r} ({self.kind}) session={self.session_id}{' closed' if self.closed else ''}>"


register_service(Service)  # in remote code, a service is a reference (flame_jupyter/service_ref.py)


def launch(
    runner: Runner,
    flamepy_service: Any,
    target: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    service: str,
    label: str,
    action: str,
    future_cls: type[ObjectFuture] = ObjectFuture,
) -> Any:
    """Send one task with its call channel and return its live future (every call and cell)."""
    session_id = _flamepy.session_of(flamepy_service).id
    channel = CallChannel(runner.name, session_id, runner.cache_endpoint)
    try:
        inner = target(*args, **kwargs, **channel.kwarg())
    except Exception as e:
        raise flame_error(action, e) from None
    fut = future_cls(
        inner,
        label=label,
        service=service,
        app=runner.name,
        session_id=session_id,
        state=FutureState(call=channel),
        decode=failure_decoder(_flamepy.session_of(flamepy_service), _flamepy.task_id_of(inner)),
    )
    registry.add_future(fut)
    tracker.track(fut, _flamepy.session_of(flamepy_service))
    return fut


def forget(runner: Runner, flamepy_service: Any) -> None:
    """Drop a closed service from the Runner's books (and flamepy's)."""
    _flamepy.forget_service(runner._runner, flamepy_service)
    runner.services = [s for s in runner.services if getattr(s, "_fp", None) is not flamepy_service]
