"""Calls from remote code: a captured service, future or map, rebuilt on the executor.

The kernel pickles a ``Service`` as a :class:`.wire.ServiceRef`, an ``ObjectFuture`` as a
:class:`.wire.FutureRef` and a finished map as a :class:`.wire.ValuesRef` (``service_ref.py``);
here they become :class:`NestedService`, :class:`NestedFuture` and :class:`NestedValues`.
Everything goes through flamepy's public API to the same Flame (this executor's
``FLAME_ENDPOINT`` if set, else the kernel's endpoint):

- a call is one task (``Session.create_task``) of a stock runpy ``RunnerRequest`` in the
  service's session, its arguments pickled with :class:`.pickling.Dumper` as the kernel's calls
  are (``ARG_TAG``; at least the capture threshold: ``put_object``, passed as its ObjectRef);
- ``get()``/``wait()`` wait on an open ``WatchTask`` stream (so the runtime sees the instance
  waits); results stay in the object cache until ``get()`` (``ref()`` passes them on);
- inner calls started while an outer call runs are cancelled when that call's cancel arrives;
- ``svc.options(forward_output=True)`` copies the inner calls' output, progress and displays
  into the outer call's stream;
- ``svc.map`` submits one task per item, at most :data:`MAP_WINDOW` in flight.
"""

from __future__ import annotations

import collections
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .channel import API, RemoteAPI, _current
from .nested_futures import NestedFuture, NestedValues, connect, forward, session, track
from .pickling import Dumper
from .runtime import _rt
from .wire import ARG_TAG, CALL_KWARG, ENV_KWARG, METHOD_KWARG, CallInfo, FutureRef, ServiceRef, ValuesRef

MAP_WINDOW = 16  # a nested map's items in flight at most


# --------------------------------------------------------------------------- services


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes, bytearray))


class NestedService:
    """A service inside remote code. Call it (or its methods) like in the notebook: each call
    is a Flame task in the service's session and returns a :class:`NestedFuture`."""

    def __init__(self, state: ServiceRef, forward: bool = False) -> None:
        self.__dict__["_state"] = state
        self.__dict__["_forward"] = forward
        self.__dict__["name"] = state["name"]
        self.__dict__["kind"] = state["kind"]
        self.__dict__["methods"] = tuple(state.get("methods") or ())
        self.__dict__["session_id"] = state["session"]

    def __call__(self, *args: Any, **kwargs: Any) -> NestedFuture:
        if self.kind in ("class", "instance"):
            raise TypeError(
                f"service {self.name!r} serves a {self.kind}; call one of its methods: {', '.join(self.methods)}"
            )
        return self._submit(None, args, kwargs)

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self.__dict__["methods"]:
            raise AttributeError(f"service {self.__dict__['name']!r} has no method {method!r}")

        def call(*args: Any, **kwargs: Any) -> NestedFuture:
            return self._submit(method, args, kwargs)

        call.__name__ = method
        call.map = lambda *its, **kw: self._map(method, its, **kw)  # type: ignore[attr-defined]
        call.starmap = lambda it, **kw: self._map(method, (it,), star=True, **kw)  # type: ignore[attr-defined]
        return call

    def options(self, *, forward_output: bool = False) -> NestedService:
        """This service with call options: ``forward_output=True`` shows its calls' output and
        progress in the output of the call that makes them."""
        return NestedService(self._state, forward=forward_output)

    def map(self, *iterables: Iterable[Any], **kwargs: Any) -> NestedMap:
        """One task per item of ``zip(*iterables)``, at most :data:`MAP_WINDOW` in flight."""
        return self._map(None, iterables, **kwargs)

    def starmap(self, iterable: Iterable[Any], **kwargs: Any) -> NestedMap:
        return self._map(None, (iterable,), star=True, **kwargs)

    def _map(
        self,
        method: str | None,
        iterables: tuple[Iterable[Any], ...],
        *,
        star: bool = False,
        return_exceptions: bool = False,
        chunksize: int | None = None,
        ordered: bool = True,
    ) -> NestedMap:
        del chunksize, ordered  # one task per item, results in input order
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        items = iter(iterables[0]) if star else zip(*iterables, strict=False)
        return NestedMap(lambda a: self._submit(method, tuple(a), {}), items, return_exceptions)

    def _encode(self, value: Any, prefix: str) -> Any:
        """One argument as a kernel call sends it: futures by ObjectRef, the rest pickled."""
        from flamepy.core import ObjectRef

        if isinstance(value, NestedFuture):
            return value.ref()
        if isinstance(value, ObjectRef) or (_plain(value) and not isinstance(value, (bytes, bytearray, str))):
            return value
        threshold = self._state.get("threshold")
        if isinstance(value, (str, bytes, bytearray)) and (threshold is None or len(value) < threshold):
            return value
        data = Dumper({"__name__": "__main__"}).dump(value)
        if threshold is not None and len(data) >= threshold:
            from flamepy.core import put_object

            return put_object(prefix, value)  # the runpy service resolves the ObjectRef
        return (ARG_TAG, data)

    def _submit(self, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NestedFuture:
        import cloudpickle
        from flamepy.runner.types import RunnerRequest

        state = self._state
        connect(state)
        prefix = f"{state['app']}/{state['session']}"
        new_args = tuple(self._encode(a, prefix) for a in args)
        new_kwargs = {k: self._encode(v, prefix) for k, v in kwargs.items()}
        run_method = method
        if method is not None and self.kind == "function":  # a method of a served callable instance
            new_kwargs[METHOD_KWARG] = method
            run_method = None
        env = state.get("env")
        if env is None:  # a service that uses itself: the globals this process has for it
            rec = _rt().namespaces.get(state["payload"])
            env = rec["env"] if rec is not None else None
        if env is not None:
            new_kwargs[ENV_KWARG] = env
        key = uuid.uuid4().hex
        info: CallInfo = {
            "id": key,
            "stream": f"{prefix}/fj-{key}-out",
            "cancel": f"{prefix}/fj-{key}-cancel",
        }
        new_kwargs[CALL_KWARG] = info
        request = RunnerRequest(method=run_method, args=new_args or None, kwargs=new_kwargs)
        task = session(state["session"]).create_task(
            cloudpickle.dumps(request, protocol=cloudpickle.DEFAULT_PROTOCOL)
        )
        label = self.name if method is None else f"{self.name}.{method}"
        fut = NestedFuture(state, label, state["session"], task.id, cancel_key=info["cancel"])
        track(fut)
        outer = _current()
        if self._forward and outer is not None:
            threading.Thread(
                target=forward, args=(fut, info["stream"], outer), name="flame-jupyter-forward", daemon=True
            ).start()
            fut._start_watch()
        return fut

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteAPI("service_ref"), (self._state,))

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.methods]

    def __repr__(self) -> str:
        return f"<flame_jupyter nested service {self.name!r} ({self.kind}) session={self.session_id}>"


class NestedMap:
    """The calls of a nested ``map``: results in input order (``get()``, iteration)."""

    def __init__(self, submit: Any, items: Iterator[Any], return_exceptions: bool) -> None:
        self._submit = submit
        self._items = items
        self._return_exceptions = return_exceptions
        self._pending: collections.deque[NestedFuture] = collections.deque()
        self._results: list[Any] = []
        self._cancelled = False
        self._exhausted = False
        self._fill()

    def _fill(self) -> None:
        while not self._cancelled and not self._exhausted and len(self._pending) < MAP_WINDOW:
            try:
                args = next(self._items)
            except StopIteration:
                self._exhausted = True
                return
            self._pending.append(self._submit(args))

    def __iter__(self) -> Iterator[Any]:
        yield from list(self._results)
        while self._pending:
            fut = self._pending.popleft()
            self._fill()
            try:
                value = fut.get()
            except Exception as exc:
                if not self._return_exceptions:
                    self.cancel()
                    raise
                value = exc
            self._results.append(value)
            yield value

    def get(self) -> list[Any]:
        for _ in self:
            pass
        return list(self._results)

    result = get

    def done(self) -> bool:
        return (self._exhausted or self._cancelled) and all(f.done() for f in self._pending)

    def cancel(self) -> bool:
        """Cancel the items in flight; the rest are never sent."""
        self._cancelled = True
        return any([f.cancel() for f in self._pending])


# --------------------------------------------------------------------------- rebuilding references


def _service_ref(state: ServiceRef) -> NestedService:
    return NestedService(state)


def _future_ref(state: FutureRef) -> NestedFuture:
    return NestedFuture(
        state, state["label"], state["session"], state["task"], ref=state["ref"], cancel_key=state["cancel"]
    )


def _values_ref(state: ValuesRef) -> NestedValues:
    return NestedValues(state, state["label"], state["ref"], state["count"])


API.update({"service_ref": _service_ref, "future_ref": _future_ref, "values_ref": _values_ref})
