"""Capture notebook code so the stock ``flamepy.runner.runpy`` service can run it.

>>> def score(x):
...     return x * WEIGHT
>>> WEIGHT = 3
>>> captured = capture(score)                              # doctest: +SKIP
>>> service = runner.service(captured.execution_object)    # doctest: +SKIP
>>> args, kwargs = captured.prepare_call((2,), {})         # doctest: +SKIP
>>> service(*args, **kwargs).get()                         # doctest: +SKIP
6

What travels, in short (details in ``docs/capture.md``):

- the function / class / instance / cell itself, by value (dill), without its globals;
- every notebook global it uses, transitively, in an *env*: fresh for each call (see
  :meth:`Captured.prepare_call`) unless ``snapshot=True`` froze them at capture;
- installed modules by reference (import on the executor), local modules by value (source);
- values bigger than the threshold (default 1 MiB) once to the object store, then by reference.

Anything that cannot travel raises :class:`CaptureError` before anything is sent.

Long because both entry points, objects and cells, share one capture run and its finish.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import inspect
import sys
import threading
import uuid
from typing import Any

from flame_jupyter.remote import (
    ENV_KWARG,
    LiveInstance,
    RemoteFunction,
    RemoteInstance,
    make_header,
    make_remote_class,
)

from .arguments import ArgumentEncoder
from .env import CaptureRun, ObjectStore
from .errors import CaptureError
from .names import cell_free_names
from .redefinition import Redefinition
from .stores import FlameObjectStore, MemoryObjectStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENV_KWARG",
    "CaptureError",
    "Captured",
    "Capturer",
    "FlameObjectStore",
    "MemoryObjectStore",
    "ObjectStore",
    "capture",
    "capture_cell",
    "configure",
    "default_capturer",
]

#: Referenced values whose pickle is at least this big go to the object store (1 MiB).
DEFAULT_THRESHOLD = 1 << 20


def _main_ns() -> dict[str, Any]:
    return sys.modules["__main__"].__dict__


def _label(obj: Any, ns: dict[str, Any], name: str | None) -> str:
    if name:
        return name
    found = [k for k, v in ns.items() if v is obj and not k.startswith("_")]
    if found:
        own = getattr(obj, "__name__", None)
        return own if own in found else found[0]
    if hasattr(obj, "func") and hasattr(obj, "args"):  # functools.partial
        return "partial({})".format(getattr(obj.func, "__name__", "?"))
    own = getattr(obj, "__name__", None)
    if isinstance(own, str):
        return own
    return f"<{type(obj).__name__} instance>"


def _public_methods(obj: Any) -> list[str]:
    """Public callables of a class or instance, found without running properties."""
    out = []
    for name in dir(obj):
        if name.startswith("_"):
            continue
        try:
            attr = inspect.getattr_static(obj, name)
        except AttributeError:
            continue
        if isinstance(attr, (staticmethod, classmethod)) or callable(attr):
            out.append(name)
    return out


def _callable_instance(obj: Any) -> bool:
    """An object of a class with ``__call__`` (a model, a transformer): served as a function, its
    public methods (inherited ones too) callable as well."""
    return not (
        inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, functools.partial)
    ) and callable(obj)


def _session_context(obj: Any) -> Any:
    try:
        from flamepy.runner.types import SessionContext
    except ImportError:  # pragma: no cover
        return None
    ctx = (
        getattr(obj, "_session_context", None)
        if not isinstance(obj, type)
        else obj.__dict__.get("_session_context")
    )
    return ctx if isinstance(ctx, SessionContext) else None


class Captured:
    """A captured object, ready for ``Runner.service(captured.execution_object)``.

    Attributes: ``kind`` ("function", "class", "instance" or "cell"), ``name``,
    ``execution_object`` (what flamepy serves), ``names`` (notebook globals that travelled),
    ``snapshot``; ``served_as`` (the service's name, for messages) and ``redefinition`` (the
    watch that warns when the notebook redefines the served code) are set by whoever serves it.
    """

    served_as: str | None = None
    redefinition: Redefinition | None = None

    def __init__(
        self,
        capturer: Capturer,
        ns: dict[str, Any],
        state: dict[str, Any],
        seeds: list[str],
        modules: list[str],
        names: list[str],
    ) -> None:
        self.kind: str = state["kind"]
        self.name: str = state["name"]
        self.snapshot: bool = bool(state["snapshot"])
        self.state = state
        self.names = tuple(names)
        self._capturer = capturer
        self._ns = ns
        self._seeds = seeds
        self._modules = modules
        if self.kind == "class":
            self.execution_object: Any = make_remote_class(state)
        elif self.kind == "instance":
            self.execution_object = RemoteInstance(state)
            self.live_object: Any = LiveInstance(state)  # what flame_jupyter's own services serve
        else:
            self.execution_object = RemoteFunction(state)

    def __repr__(self) -> str:
        return "<Captured {} {} globals={}{}>".format(
            self.kind,
            self.name,
            list(self.names),
            " snapshot" if self.snapshot else "",
        )

    def env(self, *, extra_modules: Any = ()) -> dict[str, Any] | None:
        """Current values of the notebook globals this code uses (``None`` for snapshots).

        Raises :class:`CaptureError` if a global no longer captures; uploads changed large values.
        """
        if self.snapshot:
            return None
        env, _ = self._capturer._build_env(self._ns, self.name, self._seeds, [*self._modules, *extra_modules])
        return env

    def prepare_call(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for one call of the service: env added, arguments encoded.

        Arguments are pickled with this engine (:mod:`.arguments`): notebook functions and
        classes anywhere inside travel by value and the globals they use join the env; values at
        least as big as the threshold go to the object store once per content, by reference.
        """
        if self.redefinition is not None:
            self.redefinition.check(self.served_as or self.name)
        kwargs = dict(kwargs or {})
        if ENV_KWARG in kwargs:
            raise TypeError(f"{ENV_KWARG} is reserved by flame_jupyter")
        enc = ArgumentEncoder(self._capturer._run(self._ns))
        new_args = tuple(enc.encode(f"argument {i}", a) for i, a in enumerate(args))
        new_kwargs = {k: enc.encode(f"argument {k!r}", v) for k, v in kwargs.items()}
        extra_seeds = [n for n in enc.names if n not in self._seeds]
        if self.snapshot:
            env = None
            if enc.names or enc.modules:  # only what the arguments' code needs (the rest is frozen)
                env, _ = self._capturer._build_env(self._ns, self.name, extra_seeds, list(enc.modules))
        else:
            env, _ = self._capturer._build_env(
                self._ns, self.name, [*self._seeds, *extra_seeds], [*self._modules, *enc.modules]
            )
        if env is not None:
            new_kwargs[ENV_KWARG] = env
        return new_args, new_kwargs


class Capturer:
    """Capture settings plus the record of what is already in the object store.

    >>> capturer = Capturer(store=MemoryObjectStore(), threshold=1 << 20)
    >>> captured = capturer.capture(lambda x: x + 1, ns={"__name__": "__main__"})
    """

    def __init__(self, store: ObjectStore | None = None, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.store = store
        self.threshold = threshold
        self._uploaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def forget_uploads(self) -> None:
        """Forget which values are in the store (e.g. after the store was emptied)."""
        with self._lock:
            self._uploaded.clear()

    def _run(self, ns: dict[str, Any]) -> CaptureRun:
        return CaptureRun(
            ns, threshold=self.threshold, store=self.store, uploaded=self._uploaded, lock=self._lock
        )

    def _build_env(
        self, ns: dict[str, Any], label: str, seeds: list[str], modules: list[str]
    ) -> tuple[dict[str, Any], CaptureRun]:
        run = self._run(ns)
        run.rec.context = [label]
        for name in seeds:
            run.rec.need(name)
        entries = run.entries()
        mods = run.modules(modules)
        refs = run.upload()
        return run.env(entries, mods, refs), run

    def _finish(
        self,
        run: CaptureRun,
        ns: dict[str, Any],
        *,
        kind: str,
        label: str,
        body: bytes,
        seeds: list[str],
        root_modules: list[str],
        snapshot: bool,
        extra: dict[str, Any],
        namespace_id: str | None = None,
    ) -> Captured:
        entries = run.entries()
        mods = run.modules(root_modules)
        refs = run.upload()  # only now, after everything captured: a failure sends nothing
        env = run.env(entries, mods, refs)
        state = {
            "id": namespace_id or uuid.uuid4().hex,
            "kind": kind,
            "name": label,
            "header": make_header(),
            "body": body,
            "refs": dict(refs),
            "env": env,
            "snapshot": snapshot,
            "threshold": run.threshold,
            **extra,
        }
        names = [e[0] for e in entries]
        return Captured(self, ns, state, seeds, root_modules, names)

    def capture(
        self, obj: Any, *, ns: dict[str, Any] | None = None, snapshot: bool = False, name: str | None = None
    ) -> Captured:
        """Capture a notebook function, lambda, partial, class or instance.

        ``ns`` is the notebook namespace (default: ``__main__``). With ``snapshot=True`` the
        globals are frozen now instead of refreshed on every call: calls are reproducible even
        if the notebook changes, and cheaper (no per-call capture). ``name`` labels errors.
        """
        ns = _main_ns() if ns is None else ns
        label = _label(obj, ns, name)
        if inspect.isclass(obj):
            kind = "class"
        elif callable(obj):
            kind = "function"
        else:
            kind = "instance"
        run = self._run(ns)
        body = run.dump(obj, [label])
        seeds = list(run.rec.queue)
        root_modules = list(run.rec.modules)
        extra: dict[str, Any] = {"session_context": _session_context(obj)}
        if kind in ("class", "instance") or _callable_instance(obj):
            extra["methods"] = _public_methods(obj)
            extra["doc"] = inspect.getdoc(obj) if kind == "class" else None
        captured = self._finish(
            run,
            ns,
            kind=kind,
            label=label,
            body=body,
            seeds=seeds,
            root_modules=root_modules,
            snapshot=snapshot,
            extra=extra,
        )
        captured.redefinition = Redefinition.of(obj, ns)
        return captured

    def capture_cell(
        self,
        source: str,
        user_ns: dict[str, Any],
        *,
        outputs: Any = (),
        filename: str | None = None,
        snapshot: bool = False,
        flags: int = 0,
        namespace_id: str | None = None,
    ) -> Captured:
        """Capture a (transformed) notebook cell as a remote call.

        With ``namespace_id``, cells with the same id share one namespace on the executor (names
        one cell assigns stay for the next, on the same instance), and names the notebook does not
        define are left to that namespace instead of being an error.

        Calling the service returns ``{"value": <last expression or None>, "outputs": {name: value}}``.
        Names the cell reads before assigning are captured from ``user_ns`` like globals; names
        defined nowhere raise :class:`CaptureError`.
        """
        outputs = tuple(outputs)
        for out in outputs:
            if not isinstance(out, str) or not out.isidentifier():
                raise ValueError(f"output names must be identifiers, got {out!r}")
        if filename is None:
            filename = f"<flame-cell-{hashlib.sha1(source.encode()).hexdigest()[:12]}>"
        free = cell_free_names(source, filename=filename)
        _check_defined(free, user_ns, allow_missing=namespace_id is not None)
        tree = ast.parse(source, filename=filename)
        compile_flags = flags | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        eval_code = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()
            eval_code = compile(
                ast.Expression(last.value), filename, "eval", flags=compile_flags, dont_inherit=True
            )
        exec_code = (
            compile(tree, filename, "exec", flags=compile_flags, dont_inherit=True) if tree.body else None
        )
        run = self._run(user_ns)
        run.rec.lines[filename] = source
        body = run.dump((exec_code, eval_code, outputs), ["%%flame cell"])
        run.rec.context = ["%%flame cell"]
        for n in free:
            if n in user_ns:
                run.rec.need(n)
        seeds = list(run.rec.queue)
        return self._finish(
            run,
            user_ns,
            kind="cell",
            label="cell",
            body=body,
            seeds=seeds,
            root_modules=list(run.rec.modules),
            snapshot=snapshot,
            extra={"outputs": outputs},
            namespace_id=namespace_id,
        )


_IPYTHON_BUILTINS_HINT = "they only exist in the IPython kernel"


REMOTE_BUILTINS = ("display", "progress")  # provided on the executor by flame_jupyter.remote


def _check_defined(free: list[str], user_ns: dict[str, Any], allow_missing: bool = False) -> None:
    missing, kernel_only = [], []
    for name in free:
        if name in user_ns or name in REMOTE_BUILTINS:
            continue
        if name in builtins.__dict__:
            owner = type(builtins.__dict__[name]).__module__ or ""
            if owner.startswith(("IPython", "ipykernel")) or name in (
                "get_ipython",
                "display",
                "__IPYTHON__",
            ):
                kernel_only.append(name)
            continue
        if not allow_missing:
            missing.append(name)
    if missing or kernel_only:
        parts = []
        if missing:
            parts.append("names not defined in the notebook: {}".format(", ".join(missing)))
        if kernel_only:
            parts.append("IPython-only names ({}): {}".format(_IPYTHON_BUILTINS_HINT, ", ".join(kernel_only)))
        raise CaptureError(
            "cannot run this cell remotely, it uses {}. Define them in an earlier cell (or in this cell before use). Nothing was sent.".format(
                "; ".join(parts)
            ),
            name=(missing + kernel_only)[0],
            chain=("%%flame cell",),
        )


_default = Capturer()
_default_lock = threading.Lock()


def default_capturer() -> Capturer:
    """The capturer used by :func:`capture` and :func:`capture_cell`."""
    return _default


_UNSET: Any = object()


def configure(*, store: ObjectStore | None = _UNSET, threshold: int | None = None) -> Capturer:
    """Set the default object store and/or size threshold (bytes).

    >>> configure(store=FlameObjectStore("my-app/objects"), threshold=4 << 20)  # doctest: +SKIP
    """
    with _default_lock:
        if store is not _UNSET:
            _default.store = store  # type: ignore[assignment]
            _default.forget_uploads()
        if threshold is not None:
            _default.threshold = int(threshold)
    return _default


#: Capture with the default capturer: :meth:`Capturer.capture` and :meth:`Capturer.capture_cell`
#: (``configure`` changes that capturer in place, so these stay current).
capture = _default.capture
capture_cell = _default.capture_cell
