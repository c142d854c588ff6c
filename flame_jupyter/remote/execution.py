"""Running captured code on the executor, and the wrappers flamepy serves.

- :class:`RemoteFunction` -- a callable instance (flamepy: stateless function service);
- :func:`make_remote_class` -- a class with one stub per public method (flamepy: class service);
- :class:`RemoteInstance` -- an object kept live in its one instance between calls (flamepy: a
  function service with one fixed instance; the state policy is in its docstring).

Each wrapper pickles to the bootstrap (:mod:`.bootstrap`); :func:`_build` rebuilds it there.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import types
from collections.abc import Callable
from typing import Any

from .batches import guarded_call
from .bootstrap import _boot_fn, _register_own_source, set_builder
from .channel import RemoteAPI
from .chunks import run_chunk
from .namespace import _decode_args, _install_modules, _load_body, _namespace, _prepare, track_assigned
from .pickling import Dumper
from .wire import (
    CALL_KWARG,
    CHUNK_KWARG,
    ENV_KWARG,
    EXPECT_KWARG,
    METHOD_KWARG,
    CellResult,
    Expect,
    PayloadState,
)

_SERVICE_MODULE = "__flame_jupyter_service__"


def run_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
    """Run user code: the single choke point of every remote call.

    Seam for output streaming, progress reporting and exception formatting. Exceptions from
    user code propagate unchanged (type and traceback, with notebook cell lines). A map's
    chunk (:data:`~.wire.CHUNK_KWARG`) runs ``fn`` once per item (:func:`.chunks.run_chunk`).
    """
    if CHUNK_KWARG in kwargs:
        header = kwargs.pop(CHUNK_KWARG)
        return run_chunk(lambda a, k: run_call(fn, a, k, env), args[0], header)
    result = fn(*args, **kwargs)
    if inspect.iscoroutine(result):
        result = _run_coroutine(result)
    return result


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=runner, name="flame-jupyter-async")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _eval_maybe_async(code: types.CodeType, G: dict[str, Any]) -> Any:
    result = eval(code, G)
    if code.co_flags & inspect.CO_COROUTINE:
        result = _run_coroutine(result)
    return result


def _run_cell(spec: tuple[Any, ...], rec: dict[str, Any]) -> CellResult:
    exec_code, eval_code, outputs = spec[0], spec[1], spec[2]
    G = rec["G"]
    before = dict(G)
    try:
        if exec_code is not None:
            _eval_maybe_async(exec_code, G)
        value = _eval_maybe_async(eval_code, G) if eval_code is not None else None
    finally:
        track_assigned(rec, before)
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
        raise TypeError(  # the cell's value must travel back, as a call's result
            f"the cell's last expression is a generator ({value.__qualname__}), which cannot travel "
            "back to the notebook: make it a list (list(...)), or report items while the cell runs "
            "with print() or flame_jupyter.progress(done, total, message)"
        )
    missing = [n for n in outputs if n not in G]
    if missing:
        raise NameError("%%flame: the cell did not define {}".format(", ".join(repr(n) for n in missing)))
    return {"value": value, "outputs": {n: G[n] for n in outputs}}


# --------------------------------------------------------------------------- wrappers


class RemoteFunction:
    """A captured function, lambda, partial, callable object or ``%%flame`` cell.

    flamepy sees a callable non-class object and creates a stateless function service; on the
    executor each call pops :data:`ENV_KWARG`, refreshes the notebook globals and runs the code.
    """

    def __init__(self, state: PayloadState) -> None:
        self._flame_state = state
        self._flame_target: Any = None
        self.__name__ = state.get("name") or "remote"
        if state.get("session_context") is not None:
            self._session_context = state["session_context"]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        env = kwargs.pop(ENV_KWARG, None)
        call = kwargs.pop(CALL_KWARG, None)
        return guarded_call(call, self._flame_call, args, kwargs, env)

    def _flame_call(self, args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
        state = self._flame_state
        rec = _prepare(state, env)
        if self._flame_target is None:
            self._flame_target = _load_body(state, rec)
        target = self._flame_target
        if state["kind"] == "cell":
            session = str(state.get("id", "")).removeprefix("session:")
            check_expect(
                rec, kwargs.pop(EXPECT_KWARG, None), "this session's", f"the namespace of session {session!r}"
            )
            return run_call(_run_cell, (target, rec), {}, env)
        method = kwargs.pop(METHOD_KWARG, None)
        args, kwargs = _decode_args(rec, args, kwargs)
        return run_call(target if method is None else getattr(target, method), args, kwargs, env)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("function", self._flame_state))

    def __repr__(self) -> str:
        return "<flame_jupyter remote {} {}>".format(self._flame_state["kind"], self.__name__)


_UNLOADED = object()


class RemoteInstance:
    """A captured object, served as flamepy serves an instance (a stateful service).

    ``dir()`` lists the wrapped object's public methods, which flamepy serves; attribute access
    delegates to the object once loaded. Pickling gives the object's current state, so with
    plain flamepy (runpy saves a stateful service after each call and reloads it before the
    next) changes survive between calls. flame_jupyter's own services serve :class:`LiveInstance`.
    """

    _flame_kind = "instance"

    def __init__(self, state: PayloadState) -> None:
        d = self.__dict__
        d["_flame_state"] = state
        d["_flame_obj"] = _UNLOADED
        d["_flame_epoch"] = None  # the kernel's epoch this object's state belongs to, once called
        d["__name__"] = state.get("name") or "instance"
        if state.get("session_context") is not None:
            d["_session_context"] = state["session_context"]

    def _flame_invoke(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """A method called by name (flamepy's ``RunnerRequest.method``: nested calls)."""
        env = kwargs.pop(ENV_KWARG, None)
        call = kwargs.pop(CALL_KWARG, None)

        def invoke(args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
            return self._flame_run(name, kwargs.pop(EXPECT_KWARG, None), args, kwargs, env)

        return guarded_call(call, invoke, args, kwargs, env)

    def _flame_run(
        self, name: str, expect: Any, args: tuple[Any, ...], kwargs: dict[str, Any], env: Any
    ) -> Any:
        self._flame_check(expect)
        rec, obj = self._flame_load(env)
        args, kwargs = _decode_args(rec, args, kwargs)
        return run_call(getattr(obj, name), args, kwargs, env)

    def _flame_check(self, expect: Any) -> None:
        """Refuse a call that expects state this instance does not hold (see :class:`.wire.Expect`)."""
        check_expect(self.__dict__, expect, "this service's", self.__dict__["__name__"])

    def _flame_load(self, env: Any = None) -> tuple[dict[str, Any], Any]:
        state = self.__dict__["_flame_state"]
        rec = _prepare(state, env)
        obj = self.__dict__["_flame_obj"]
        if obj is _UNLOADED:
            obj = _load_body(state, rec)
            self.__dict__["_flame_obj"] = obj
        return rec, obj

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        d = self.__dict__
        if d.get("_flame_obj", _UNLOADED) is _UNLOADED:
            if name in d["_flame_state"].get("methods", ()):
                return functools.partial(self._flame_invoke, name)
            raise AttributeError(
                f"{self!r} has no method {name!r} (attributes other than public methods are read on the executor)"
            )
        value = getattr(d["_flame_obj"], name)
        return functools.partial(self._flame_invoke, name) if callable(value) else value

    def __dir__(self) -> list[str]:
        return list(self.__dict__["_flame_state"].get("methods", ()))

    def __reduce__(self) -> tuple[Any, ...]:
        """The captured object, or once loaded its current state (a copy: for tests and tools;
        runpy never pickles a function service's object)."""
        state = self.__dict__["_flame_state"]
        obj = self.__dict__.get("_flame_obj", _UNLOADED)
        if obj is not _UNLOADED:
            rec = _namespace(state)
            try:
                body = Dumper(rec["G"], threshold=state.get("threshold"), known=rec["refs"]).dump(obj)
            except Exception as exc:
                raise RuntimeError(
                    f"flame_jupyter: cannot pickle the state of {state.get('name')} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            state = dict(state, body=body, env=rec["env"] or state.get("env"), refs=dict(rec["refs"]))
        return (_boot_fn(), (self._flame_kind, state))

    def __repr__(self) -> str:
        return "<flame_jupyter remote instance of {}>".format(self.__dict__["_flame_state"].get("name"))


class LiveInstance(RemoteInstance):
    """A captured object, served live: its one instance keeps it between calls, as a Ray actor.

    flamepy sees a callable and serves a function service (not stateful: runpy neither reloads
    nor re-saves it around calls); the kernel registers it with one fixed instance. Each call
    names its method (:data:`METHOD_KWARG`) and the state it expects (:data:`EXPECT_KWARG`); a
    new instance, which holds only the object as it was captured, refuses a call that expects
    changes made on an instance that is gone (:meth:`_flame_check`). A failing call leaves the
    object as the method left it.
    """

    _flame_kind = "live"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        env = kwargs.pop(ENV_KWARG, None)
        call = kwargs.pop(CALL_KWARG, None)
        return guarded_call(call, self._flame_dispatch, args, kwargs, env)

    def _flame_dispatch(self, args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
        name = kwargs.pop(METHOD_KWARG, None)
        if name is None:
            raise TypeError(f"{self!r} is not callable: call one of its methods")
        return self._flame_run(name, kwargs.pop(EXPECT_KWARG, None), args, kwargs, env)


#: A call refused by a new instance (:func:`check_expect`); the kernel reads "state was lost
#: because" (as in the embedded runtime's message) to start a new epoch.
STATE_LOST = (
    "flame_jupyter: {whose} state was lost because the instance that kept {what} ended (its "
    "process exited, was killed or ran out of memory, or Flame lost its executor): it lives only "
    "in its instance, and at least {ran} earlier call(s) changed it there. This call did not run; "
    "calls made after this error start again from {what} as it was at the start. Rebuild the state "
    "you need"
)


def check_expect(holder: dict[str, Any], expect: Any, whose: str, what: str) -> None:
    """Refuse a call that expects live state ``holder`` (an instance's object, a session's
    namespace) does not hold: :class:`.wire.Expect` changes made on an instance that is gone."""
    if expect is None:  # not sent by the kernel's service (a nested call): nothing to check
        return
    want = Expect(*expect)
    held = holder.get("_flame_epoch")
    if want.ran and held != want.epoch:
        raise RuntimeError(STATE_LOST.format(whose=whose, what=what, ran=want.ran))
    if held is None or want.epoch > held:
        holder["_flame_epoch"] = want.epoch


class _InitDescriptor:
    """``__init__`` of a remote class: loads the user's class and instantiates it."""

    def __init__(self, state: PayloadState) -> None:
        self._state = state

    def __get__(self, inst: Any, owner: Any = None) -> Any:
        if inst is None:
            return self
        return functools.partial(_init_instance, self._state, inst)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("__init__ of a flame_jupyter remote class needs an instance")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("init", self._state))


def _init_instance(state: PayloadState, inst: Any, *args: Any, **kwargs: Any) -> None:
    env = kwargs.pop(ENV_KWARG, None)
    kwargs.pop(CALL_KWARG, None)
    d = inst.__dict__
    d["_flame_state"] = state
    try:
        rec = _prepare(state, env)
    except RuntimeError as exc:  # version skew: report it on the first call, not at session start
        d["_flame_error"] = exc
        return
    cls = _load_body(state, rec)
    args, kwargs = _decode_args(rec, args, kwargs)
    d["_flame_obj"] = run_call(cls, args, kwargs, env)


class _MethodStub:
    """A public method of a remote class; calls the same method of the real instance."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, inst: Any, owner: Any = None) -> Any:
        if inst is None:
            return self
        return functools.partial(_invoke_method, inst, self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self._name}() of a flame_jupyter remote class must be called on an instance")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("stub", self._name))


def _invoke_method(inst: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    d = inst.__dict__
    env = kwargs.pop(ENV_KWARG, None)
    call = kwargs.pop(CALL_KWARG, None)

    def invoke(args: tuple[Any, ...], kwargs: dict[str, Any], env: Any) -> Any:
        if "_flame_error" in d:
            raise d["_flame_error"]
        rec = _prepare(d["_flame_state"], env)
        args, kwargs = _decode_args(rec, args, kwargs)
        return run_call(getattr(d["_flame_obj"], name), args, kwargs, env)

    return guarded_call(call, invoke, args, kwargs, env)


def make_remote_class(state: PayloadState) -> type:
    """A class flamepy can serve: one stub per public method of the captured class.

    It contains no bytecode (its members are objects of this module), so cloudpickle ships it
    by value without tying it to the kernel's Python version.
    """
    body: dict[str, Any] = {
        "__init__": _InitDescriptor(state),
        "__module__": _SERVICE_MODULE,
        "__qualname__": state["name"],
        "__doc__": state.get("doc"),
    }
    for name in state.get("methods", ()):
        body[name] = _MethodStub(name)
    if state.get("session_context") is not None:
        body["_session_context"] = state["session_context"]
    return type(state["name"], (), body)


def _build(kind: str, state: Any) -> Any:
    """Rebuild a wrapper object of this package (called by the bootstrap on the executor)."""
    _register_own_source()
    if isinstance(state, dict):
        # Local modules first: flamepy unpickles call arguments (which may use them) before
        # any of our code runs. Writing source files needs no version check.
        _install_modules((state.get("env") or {}).get("modules"))
    if kind == "function":
        return RemoteFunction(state)
    if kind == "instance":
        return RemoteInstance(state)
    if kind == "live":
        return LiveInstance(state)
    if kind == "init":
        return _InitDescriptor(state)
    if kind == "stub":
        return _MethodStub(state)
    if kind == "api":
        return RemoteAPI(state)
    raise ValueError(f"unknown flame_jupyter object kind {kind!r}")


set_builder(_build)
