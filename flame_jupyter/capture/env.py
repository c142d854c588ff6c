"""One capture run: pickle the root, discover the notebook globals it needs, build the env.

Discovery falls out of pickling: every notebook function the pickler meets reports the globals
its bytecode uses, and those globals are pickled in turn (transitively). The pickler also
reports local modules, notebook cell sources (for tracebacks), objects that must not travel
and large values (which go to the object store once, keyed by content digest).
"""

from __future__ import annotations

import collections
import linecache
import threading
import types
from typing import Any, Protocol

from flame_jupyter.remote import ENV_KWARG, Dumper, bytes_digest, cheap_digest
from flame_jupyter.remote.wire import ENV_FORMAT, Env

from .errors import MAGIC_REASON, Blocked, CaptureError, blocked_reason, error_for, type_name
from .modules import changed_attributes, files_digest, local_top, module_files
from .names import code_global_names
from .references import reduce_override, reducer_for

#: Names never captured from the notebook namespace.
SKIP_NAMES = frozenset({"__builtins__", "__name__", "__doc__", "__spec__", "__loader__", "__package__"})

#: IPython puts these in the namespace; executors have the plain builtins of the same name.
_BUILTIN_SHADOWS = frozenset({"exit", "quit"})

__all__ = ["ENV_KWARG", "ObjectStore", "Recorder", "CaptureDumper", "CaptureRun"]


class ObjectStore(Protocol):
    """Where large values go. Production: flamepy's object cache; tests: memory or a directory.

    ``put`` returns a flamepy ``ObjectRef`` (or an object the executor's
    ``flamepy.core.get_object`` accepts); ``get_object(ref)`` must return the same bytes.
    """

    def put(self, key_hint: str, data: bytes) -> Any: ...

    def get(self, ref: Any) -> bytes: ...


class Recorder:
    """What pickling found out, shared by the dumps of one capture run."""

    def __init__(self) -> None:
        self.queue: collections.deque[str] = collections.deque()
        self.chains: dict[str, list[str]] = {}
        self.context: list[str] = []
        self.modules: dict[str, None] = {}
        self.lines: dict[str, str] = {}
        self.large: dict[str, tuple[str, Any]] = {}
        self.notebook = False

    def need(self, name: str) -> None:
        if name not in self.chains and name not in SKIP_NAMES:
            self.chains[name] = [*self.context, name]
            self.queue.append(name)

    def add_lines(self, filename: str) -> None:
        if filename in self.lines or not filename:
            return
        lines = linecache.getlines(filename)
        if lines:
            self.lines[filename] = "".join(lines)


class CaptureDumper(Dumper):
    """Client-side dumper: reports globals, modules, cell sources, blocked and large objects."""

    def __init__(
        self, ns: dict[str, Any], rec: Recorder, *, threshold: int | None, buffer_callback: Any = None
    ) -> None:
        super().__init__(ns, threshold=threshold, buffer_callback=buffer_callback)
        self.rec = rec
        self._ns_name = ns.get("__name__", "__main__")
        self._pids: dict[int, tuple[Any, str | None]] = {}
        self._p.reducer_override = self._reduce_reference  # services and futures travel as references

    def _reduce_reference(self, obj: Any) -> Any:
        reduced = reduce_override(obj)
        if reduced is not NotImplemented:
            self.rec.notebook = True  # only this engine's bytes carry the reference
        return reduced

    def on_function(self, fn: types.FunctionType) -> None:
        self.rec.notebook = True
        for name in code_global_names(fn.__code__):
            self.rec.need(name)
        self.rec.add_lines(fn.__code__.co_filename)

    def on_object(self, obj: Any) -> None:
        reason = blocked_reason(obj)
        if reason is not None and reducer_for(obj) is None:
            raise Blocked(obj, reason)
        t = type(obj)
        if t is types.ModuleType:
            mod = obj.__name__
        elif isinstance(obj, type) or t is types.FunctionType or t is types.BuiltinFunctionType:
            mod = getattr(obj, "__module__", None)
            if isinstance(obj, type) and mod == self._ns_name:
                self.rec.notebook = True
        else:
            return
        if isinstance(mod, str):
            top = local_top(mod)
            if top is not None:
                self.rec.modules[top] = None

    def large_id(self, obj: Any) -> str | None:
        if self.threshold is None:
            return None
        hit = self._pids.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        digest = cheap_digest(obj, self.threshold)
        if digest is not None:
            self.rec.large.setdefault(digest, ("obj", obj))
        else:
            digest = self._pandas_digest(obj)
        self._pids[id(obj)] = (obj, digest)
        return digest

    def _pandas_digest(self, obj: Any) -> str | None:
        t = type(obj)
        if not t.__module__.startswith("pandas") or t.__name__ not in ("DataFrame", "Series"):
            return None
        try:
            usage = obj.memory_usage(index=True, deep=False)
            size = int(usage.sum()) if hasattr(usage, "sum") else int(usage)
        except Exception:  # noqa: BLE001 - unknown pandas versions: just inline
            return None
        if size < self.threshold:
            return None
        data = CaptureDumper(self.ns, self.rec, threshold=None).dump(obj)
        digest = bytes_digest(data)
        self.rec.large.setdefault(digest, ("blob", data))
        return digest


def is_notebook_code(value: Any, ns: dict[str, Any]) -> bool:
    """A function or class defined in the notebook namespace."""
    if isinstance(value, types.FunctionType):
        return value.__globals__ is ns
    return isinstance(value, type) and value.__module__ == ns.get("__name__", "__main__")


class CaptureRun:
    """Pickles a root object and the notebook globals it needs; uploads large values."""

    def __init__(
        self,
        ns: dict[str, Any],
        *,
        threshold: int | None,
        store: ObjectStore | None,
        uploaded: dict[str, Any],
        lock: threading.Lock,
    ) -> None:
        self.ns = ns
        self.threshold = threshold if store is not None else None
        self.store = store
        self.uploaded = uploaded
        self.lock = lock
        self.rec = Recorder()
        self.attrs: list[tuple[str, str, str, Any]] = []  # (module, attribute, digest, data)
        self._late_entries: list[tuple[str, str, str, Any]] = []

    def dump(self, obj: Any, chain: list[str]) -> bytes:
        """dill bytes of ``obj``; failures become a CaptureError naming the chain."""
        self.rec.context = list(chain)
        dumper = CaptureDumper(self.ns, self.rec, threshold=self.threshold)
        try:
            return dumper.dump(obj)
        except CaptureError:
            raise
        except Exception as exc:  # noqa: BLE001 - every pickling failure is reported the same way
            raise error_for(list(chain), obj, dumper.failed, exc) from None

    def entries(self) -> list[tuple[str, str, str, Any]]:
        """Env entries for every name discovered so far (and those they lead to)."""
        out = []
        rec = self.rec
        while rec.queue:
            name = rec.queue.popleft()
            if name not in self.ns:
                continue  # a builtin, or undefined (NameError remotely, as locally)
            entry = self._entry(name, self.ns[name], rec.chains[name])
            if entry is not None:
                out.append(entry)
        return out

    def _entry(self, name: str, value: Any, chain: list[str]) -> tuple[str, str, str, Any] | None:
        if isinstance(value, types.ModuleType):
            if value.__name__ == "__main__":
                raise CaptureError.unpicklable(
                    chain, "module", "the notebook's own __main__ module cannot be sent"
                )
            top = local_top(value.__name__)
            if top is not None:
                self.rec.modules[top] = None
            return (name, "module", "module:" + value.__name__, value.__name__)
        if blocked_reason(getattr(value, "__self__", value)) is not None:
            if name in _BUILTIN_SHADOWS:
                return None
            if name == "get_ipython":
                raise CaptureError.unpicklable(chain, type_name(value), MAGIC_REASON)
        kind = "code" if is_notebook_code(value, self.ns) else "value"
        data = self.dump(value, chain)
        digest = bytes_digest(data)
        if kind == "value" and self.threshold is not None and len(data) >= self.threshold:
            self.rec.large.setdefault(digest, ("blob", data))
            return (name, kind, digest, None)
        return (name, kind, digest, data)

    def modules(self, extra: Any = ()) -> list[tuple[str, str, dict[str, bytes]]]:
        out = []
        for top in dict.fromkeys([*extra, *self.rec.modules]):
            try:
                files = module_files(top)
            except (ValueError, OSError) as exc:
                raise CaptureError(
                    f"cannot capture local module {top!r}: {exc}. Nothing was sent.", name=top
                ) from None
            out.append((top, files_digest(files), files))
        self._module_attrs([m[0] for m in out])
        return out

    def _module_attrs(self, tops: list[str]) -> None:
        """The attributes of shipped modules the notebook changed (they travel as globals do);
        globals their code needs become env entries too (before :meth:`upload`)."""
        self.attrs = []
        for modname, attr, value in changed_attributes(tops, lambda v: is_notebook_code(v, self.ns)):
            data = self.dump(value, [f"{modname}.{attr}"])
            digest = bytes_digest(data)
            if self.threshold is not None and len(data) >= self.threshold:
                self.rec.large.setdefault(digest, ("blob", data))
                self.attrs.append((modname, attr, digest, None))
            else:
                self.attrs.append((modname, attr, digest, data))
        self._late_entries = self.entries() if self.attrs else []

    def upload(self, digests: Any = None) -> dict[str, Any]:
        """Put pending large values into the store (once per content digest); their refs."""
        refs: dict[str, Any] = {}
        for digest, (how, obj) in list(self.rec.large.items()):
            if digests is not None and digest not in digests:
                continue
            with self.lock:
                ref = self.uploaded.get(digest)
            if ref is None:
                if how == "blob":
                    data = obj
                else:
                    data = CaptureDumper(self.ns, Recorder(), threshold=None).dump(obj)
                assert self.store is not None
                ref = self.store.put(digest, data)
                with self.lock:
                    self.uploaded[digest] = ref
            refs[digest] = ref
        return refs

    def env(self, entries: list[tuple[str, str, str, Any]], modules: list[Any], refs: dict[str, Any]) -> Env:
        return {
            "format": ENV_FORMAT,
            "entries": [*entries, *(e for e in self._late_entries if e[0] not in {x[0] for x in entries})],
            "refs": refs,
            "modules": modules,
            "lines": dict(self.rec.lines),
            "attrs": list(self.attrs),
        }


def is_passthrough(value: Any) -> bool:
    """Arguments flamepy can pickle itself (no notebook code inside)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, bytearray)):
        return True
    from flamepy.runner.runner import ObjectFuture

    if isinstance(value, ObjectFuture):  # flamepy passes its ObjectRef: no download, no re-upload
        return True
    mod = type(value).__module__ or ""
    return mod.startswith(("numpy", "pandas", "pyarrow", "flamepy"))
