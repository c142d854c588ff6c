"""How a remote exception travels back: inside Flame's own failure message, and out again.

Flame carries one string per failed task (``TaskResult.message`` -> the task's code-3 event ->
flamepy's ``FlameError``). The executor (:mod:`flame_jupyter.remote.failure`) makes that string
``"<Type>: <message>"`` for any reader, followed by a marked :class:`~.wire.Failure` record.
This module runs in the kernel: :func:`decode_failure` rebuilds the exception. The rules:

1. ``KeyboardInterrupt`` and ``SystemExit`` raised remotely come back as
   :class:`~.errors.RemoteKeyboardInterrupt` / :class:`~.errors.RemoteSystemExit` (``.code``):
   :class:`~.errors.RemoteError`\\ s, so they never stop or interrupt the kernel. So does any
   other exception that is not an ``Exception`` (``GeneratorExit``, custom ``BaseException``).
2. The original type, when it exists here and rebuilds faithfully: the pickled exception
   (classes by name, so a notebook's class is *its* class), else ``type(*args)``, else
   ``type.__new__`` with ``args``; every attribute travelled and is restored, and ``str()``
   equals the remote message. ``remote_type`` and ``remote_traceback`` are set on it, the
   traceback is a note and what IPython shows.
3. Otherwise a :class:`~.errors.RemoteError` subclass made per remote type, named like it and
   subclassing the remote type (or its nearest base that exists here), carrying message, args,
   attributes and the remote traceback.

Chains (``__cause__``, ``__context__``) and exception-group members are rebuilt by the same
rules. Decoding never raises: whatever goes wrong gives a :class:`~.errors.RemoteError`.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import sys
from typing import Any

from flame_jupyter.errors import (
    REMOTE_NOTE,
    CancelledError,
    RemoteError,
    RemoteKeyboardInterrupt,
    RemoteSystemExit,
    RemoteTraceback,
    fill_remote,
)
from flame_jupyter.remote import wire

MAX_DEPTH = 10  # chained / grouped records rebuilt below the top one

#: Modules a notebook class may name remotely: all are the kernel's ``__main__`` here.
MAIN_ALIASES = ("__main__", "__mp_main__", "__flame_jupyter_service__")
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", ())
_EXIT_TYPES: dict[str, type[RemoteError]] = {
    "SystemExit": RemoteSystemExit,
    "KeyboardInterrupt": RemoteKeyboardInterrupt,
}
_dynamic: dict[tuple[str, str, type], type | None] = {}


def decode_failure(exc: BaseException) -> BaseException:
    """Turn what a failed task's future raised into the exception to show the user (never raises)."""
    try:
        return _decode(exc)
    except Exception as err:  # noqa: BLE001 - decoding must end in an exception to raise
        text = _text(exc).split(wire.ERROR_MARK_START, 1)[0]
        out = RemoteError(
            f"{text} (flame_jupyter could not rebuild this remote error: {type(err).__name__}: {err})"
        )
        out.__cause__ = err
        return out


def _text(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text if isinstance(text, str) else str(text)


def _decode(exc: BaseException) -> BaseException:
    text = _text(exc)
    record = wire.decode_failure(text)
    if record is None:
        if isinstance(exc, Exception) and type(exc).__name__ == "FlameError":
            return RemoteError(_explain_lost_connection(text), remote_type="", remote_traceback="")
        return exc
    if record.get("type") == wire.CANCELLED_NAME and record.get("module") == wire.CANCELLED_MODULE:
        return CancelledError(str(record.get("message") or "cancelled"))
    return rebuild(record)


def rebuild(record: Any, depth: int = 0) -> BaseException:
    """The kernel's exception for one failure record (see the module docstring for the rules)."""
    module, name = str(record.get("module") or ""), str(record.get("type") or "Exception")
    tb = str(record.get("traceback") or "")
    remote_type = name if module in ("builtins", "") else f"{module}.{name}"
    local = _resolve(module, name)
    err: BaseException | None = None
    if module == "builtins" and name in _EXIT_TYPES:
        err = _exit(record, _EXIT_TYPES[name], remote_type, tb, depth)
    elif record.get("format", 1) >= 2 and (local is None or issubclass(local, Exception)):
        err = _faithful(record, local, depth)
        if err is not None:
            _mark(err, remote_type, tb, note=depth == 0)
    if err is None:
        err = _fallback(record, local, remote_type, depth)
    if depth < MAX_DEPTH:
        _chain(err, record, depth)
    return err


# --------------------------------------------------------------------------- the original type


def _faithful(record: Any, local: type | None, depth: int) -> BaseException | None:
    values, complete = _attributes(record)
    if not complete:  # an attribute did not travel: not the same exception
        return None
    message = str(record.get("message") or "")
    if record.get("pickle"):
        try:
            obj = wire.loads_by_name(record["pickle"])
        except Exception:  # noqa: BLE001 - e.g. __init__ with keyword-only arguments
            obj = None
        if isinstance(obj, Exception) and (local is None or type(obj) is local):
            if _restore(obj, values) and _str(obj) == message:
                _members(obj, record, depth)
                return obj
    if local is None or not record.get("args"):
        return None
    try:
        args = tuple(wire.loads_by_name(record["args"]))
    except Exception:  # noqa: BLE001
        return None
    for make in (lambda: local(*args), lambda: local.__new__(local, *args), lambda: local.__new__(local)):
        try:
            obj = make()
            obj.args = args
        except Exception:  # noqa: BLE001 - this way of making it is refused: try the next
            continue
        if type(obj) is local and _restore(obj, values) and _str(obj) == message:
            _members(obj, record, depth)
            return obj
    return None


def _mark(err: BaseException, remote_type: str, tb: str, note: bool) -> None:
    """Remote facts on an exception of the original type (``note``: see ``fill_remote``)."""
    err.remote_type = remote_type  # type: ignore[attr-defined]
    err.remote_traceback = tb  # type: ignore[attr-defined]
    if tb:
        err._render_traceback_ = RemoteTraceback(tb, remote_type, _str(err))  # type: ignore[attr-defined]
        if note and hasattr(err, "add_note"):
            err.add_note(REMOTE_NOTE + tb.rstrip())


def _members(group: BaseException, record: Any, depth: int) -> None:
    """A faithfully rebuilt group's members get their remote facts and chains too."""
    subs = record.get("members")
    if not isinstance(group, _GROUP) or not isinstance(subs, list) or depth >= MAX_DEPTH:
        return
    for member, sub in zip(group.exceptions, subs, strict=False):
        if isinstance(sub, dict):
            module, name = str(sub.get("module") or ""), str(sub.get("type") or "")
            remote_type = name if module in ("builtins", "") else f"{module}.{name}"
            _mark(member, remote_type, str(sub.get("traceback") or ""), note=False)
            _members(member, sub, depth + 1)
            _chain(member, sub, depth + 1)


# --------------------------------------------------------------------------- RemoteError subclasses


def _fallback(record: Any, local: type | None, remote_type: str, depth: int) -> BaseException:
    module, name = str(record.get("module") or ""), str(record.get("type") or "Exception")
    message, tb = str(record.get("message") or ""), str(record.get("traceback") or "")
    values, _complete = _attributes(record)
    args: tuple[Any, ...] = (message,)
    if record.get("args"):
        try:
            args = tuple(wire.loads_by_name(record["args"]))
        except Exception:  # noqa: BLE001
            pass
    members = _rebuilt_members(record, depth)
    err: BaseException | None = None
    for base in _bases(record, local):
        cls = _remote_class(module, name, base)
        if cls is not None:
            err = _instantiate(cls, base, args, members, record)
            if err is not None:
                break
    if err is None:
        err = RemoteError.__new__(RemoteError)
    try:
        err.args = args
    except Exception:  # noqa: BLE001
        pass
    for key, value in values.items():
        try:
            setattr(err, key, value)
        except Exception:  # noqa: BLE001 - a field this layout has not
            pass
    reprs = record.get("attribute_reprs")
    attributes = reprs if isinstance(reprs, dict) else {}
    fill_remote(err, message, remote_type, tb, args=args, attributes=attributes, note=depth == 0)
    return err


def _bases(record: Any, local: type | None) -> list[type]:
    """Exception types the RemoteError subclass may also subclass: the remote type, its bases, none."""
    out: list[type] = []
    if local is not None and issubclass(local, Exception):
        out.append(local)
    for entry in record.get("bases") or []:
        module, _, qualname = str(entry).partition(":")
        cls = _resolve(module, qualname)
        if cls is not None and issubclass(cls, Exception) and cls is not Exception and cls not in out:
            out.append(cls)
    out.append(Exception)
    return out


def _remote_class(module: str, name: str, base: type) -> type | None:
    """``RemoteError`` combined with ``base``, named like the remote type (one per type and base)."""
    key = (module, name, base)
    if key not in _dynamic:
        if issubclass(base, RemoteError):
            _dynamic[key] = base
        else:
            short = name.rsplit(".", 1)[-1]
            bases = (RemoteError,) if base is Exception else (RemoteError, base)
            try:
                _dynamic[key] = type(short, bases, {"__module__": module, "__qualname__": name})
            except TypeError:  # an incompatible layout (some C exceptions)
                _dynamic[key] = None
    return _dynamic[key]


def _instantiate(
    cls: type, base: type, args: tuple[Any, ...], members: list[BaseException] | None, record: Any
) -> BaseException | None:
    if members is not None and isinstance(_GROUP, type) and issubclass(cls, _GROUP):
        attempts: list[tuple[Any, ...]] = [(_group_message(record, args), members)]
    else:
        attempts = [args, ()]
    for attempt in attempts:
        try:
            err = cls.__new__(cls, *attempt)
        except Exception:  # noqa: BLE001 - refused: the next attempt or base
            continue
        if isinstance(err, cls):
            return err
    return None


def _rebuilt_members(record: Any, depth: int) -> list[BaseException] | None:
    subs = record.get("members")
    if not isinstance(subs, list) or depth >= MAX_DEPTH:
        return None
    return [rebuild(sub, depth + 1) for sub in subs if isinstance(sub, dict)]


def _group_message(record: Any, args: tuple[Any, ...]) -> str:
    if args and isinstance(args[0], str) and args != (record.get("message"),):
        return args[0]
    reprs = record.get("args_repr") or []
    try:
        value = ast.literal_eval(reprs[0]) if reprs else ""
    except (ValueError, SyntaxError):
        value = ""
    return value if isinstance(value, str) else str(record.get("message") or "")


def _exit(record: Any, cls: type[RemoteError], remote_type: str, tb: str, depth: int) -> BaseException:
    values, _complete = _attributes(record)
    code = values.get("code")
    if cls is RemoteSystemExit:
        message = f"sys.exit({code!r}) in remote code: the call failed; the kernel and the service go on"
    else:
        text = str(record.get("message") or "")
        message = f"KeyboardInterrupt raised in remote code{': ' + text if text else ''}; the kernel goes on"
    err = cls.__new__(cls)
    err.args = (message,)
    fill_remote(err, message, remote_type, tb, note=depth == 0)
    if cls is RemoteSystemExit:
        err.code = code  # type: ignore[attr-defined]
    return err


# --------------------------------------------------------------------------- helpers


def _chain(err: BaseException, record: Any, depth: int) -> None:
    for key in ("cause", "context"):
        sub = record.get(key)
        if isinstance(sub, dict):
            try:
                setattr(err, f"__{key}__", rebuild(sub, depth + 1))
            except Exception:  # noqa: BLE001 - a chain link that does not rebuild is left out
                pass
    if "suppress_context" in record:
        err.__suppress_context__ = bool(record["suppress_context"])


def _attributes(record: Any) -> tuple[dict[str, Any], bool]:
    """The attributes that travelled and load here, and whether that is all of them."""
    blobs = record.get("attributes") or {}
    reprs = record.get("attribute_reprs") or {}
    values: dict[str, Any] = {}
    for key, blob in blobs.items() if isinstance(blobs, dict) else ():
        try:
            values[str(key)] = wire.loads_by_name(blob)
        except Exception:  # noqa: BLE001 - this one does not load here
            pass
    return values, set(values) >= set(reprs if isinstance(reprs, dict) else ())


def _restore(obj: BaseException, values: dict[str, Any]) -> bool:
    """Set the travelled attributes on ``obj``; False if one cannot be given its remote value."""
    for key, value in values.items():
        try:
            current = getattr(obj, key)
            if current is value or type(current) is type(value) and bool(current == value):
                continue
        except Exception:  # noqa: BLE001 - missing, or not comparable: set it
            pass
        try:
            setattr(obj, key, value)
        except Exception:  # noqa: BLE001
            return False
    return True


def _str(obj: BaseException) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001
        return "\0unprintable"


def _resolve(module: str, qualname: str) -> type | None:
    """The exception class ``module.qualname`` in the kernel, if there is one."""
    if not module or not qualname or "<" in qualname:
        return None
    if module == "builtins":
        obj: Any = builtins
    else:
        obj = sys.modules.get("__main__" if module in MAIN_ALIASES else module)
        if obj is None and _may_import(module):
            try:
                obj = importlib.import_module(module)
            except Exception:  # noqa: BLE001 - not importable here
                return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _may_import(module: str) -> bool:
    """Import a module to find a type only if its package is loaded already or is stdlib."""
    top = module.split(".", 1)[0]
    return top in sys.modules or top in getattr(sys, "stdlib_module_names", ())


_LOST = ("Socket closed", "failed to connect", "Connection refused", "shutting down", "Stream removed")


def _explain_lost_connection(text: str) -> str:
    """flamepy reports a watch that lost its server as a transport detail; say what it means."""
    if text.startswith("failed to watch task") and any(s in text for s in _LOST):
        return (
            f"lost the connection to Flame while waiting for this task ({text}): the runtime stopped or "
            "cannot be reached, so the task's outcome is unknown"
        )
    if text.startswith("failed to create task") and any(s in text for s in _LOST):  # a batch's send
        return (
            f"lost the connection to Flame before this call was sent ({text}): the runtime stopped or "
            "cannot be reached; the call did not run"
        )
    return text
