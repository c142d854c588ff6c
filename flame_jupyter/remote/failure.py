"""The executor end of a failed call: any exception described as one :class:`~.wire.Failure`.

What travels is enough for the kernel to rebuild the exception (:mod:`flame_jupyter.failures`):
type module and qualified name with the names of its bases, the message, the exception pickled
(classes by name), else its args; each attribute that pickles (``__dict__``, ``__slots__`` and
the C-level fields such as ``errno``, ``filename``, ``name``, ``code``), the repr of every
attribute, ``__notes__``, the ``__cause__`` / ``__context__`` chain and an exception group's
members, each a record of its own, and the remote traceback without this package's frames.
Sizes are bounded, so a huge attribute or a deep chain cannot make the message too large.
"""

from __future__ import annotations

import builtins
import traceback as tb_module
from typing import Any

from .bootstrap import FILENAME_PREFIX
from .wire import (
    CANCELLED_MODULE,
    CANCELLED_NAME,
    FAILURE_FORMAT,
    Failure,
    dumps_by_name,
    encode_failure,
)

MAX_DEPTH = 8  # chained / grouped records below the top one
MAX_MEMBERS = 64  # of one exception group
MAX_BLOB = 256 * 1024  # base64 characters of one pickled value
MAX_REPR = 2000
MAX_TRACEBACK = 200_000
MAX_TEXT = 1 << 20  # the whole record: beyond it, pickles and then nested records are dropped

#: Attributes the kernel rebuilds from other fields, or that do not travel.
_SKIP = frozenset(
    {"args", "__traceback__", "__cause__", "__context__", "__suppress_context__", "__notes__", "__dict__"}
)
_SKIP_GROUP = frozenset({"exceptions", "message"})  # a group's own fields: from ``members``
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", ())  # () on Python 3.10: nothing is a group


def encode(exc: BaseException, *, cancelled: bool = False) -> str:
    """The failure text of ``exc`` (what Flame carries as the task's failure message)."""
    if cancelled:
        return encode_failure(
            CANCELLED_MODULE, CANCELLED_NAME, "cancelled by the user", "", format=FAILURE_FORMAT
        )
    try:
        record = describe(exc, 0, set())
    except Exception as err:  # noqa: BLE001 - the failure must leave, described less well
        record = _core(exc, chain=True)
        record["traceback"] += f"\n(flame_jupyter could not describe this exception fully: {err!r})"
    text = _encode(record)
    if len(text) > MAX_TEXT:
        _drop(record, ("pickle", "args", "attributes"))
        text = _encode(record)
    if len(text) > MAX_TEXT:
        _drop(record, ("cause", "context", "members"))
        record["traceback"] = record["traceback"][-MAX_TRACEBACK // 4 :]
        text = _encode(record)
    return text


def _encode(record: Failure) -> str:
    rest = {k: v for k, v in record.items() if k not in ("module", "type", "message", "traceback")}
    return encode_failure(record["module"], record["type"], record["message"], record["traceback"], **rest)


def _drop(record: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        record.pop(key, None)
    for sub in [record.get("cause"), record.get("context"), *record.get("members", [])]:
        if isinstance(sub, dict):
            _drop(sub, keys)


def _core(exc: BaseException, chain: bool) -> Failure:
    cls = type(exc)
    return {
        "format": FAILURE_FORMAT,
        "module": cls.__module__ or "",
        "type": cls.__qualname__,
        "message": _safe_str(exc),
        "traceback": _traceback(exc, chain=chain),
    }


def describe(exc: BaseException, depth: int, seen: set[int]) -> Failure:
    """The record of ``exc`` (chains and members included, to ``MAX_DEPTH``)."""
    seen.add(id(exc))
    record = _core(exc, chain=depth == 0)
    cls = type(exc)
    record["bases"] = [f"{b.__module__}:{b.__qualname__}" for b in cls.__mro__[1:] if b is not object]
    record["pickle"] = _blob(exc)
    record["args"] = _blob(exc.args)
    record["args_repr"] = [_safe_repr(a) for a in exc.args]
    values = _attributes(exc)
    record["attributes"] = {k: b for k, v in values.items() if (b := _blob(v))}
    record["attribute_reprs"] = {k: _safe_repr(v) for k, v in values.items()}
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        record["notes"] = [str(n) for n in notes]
    record["suppress_context"] = bool(exc.__suppress_context__)
    if depth < MAX_DEPTH:
        for key, sub in (("cause", exc.__cause__), ("context", exc.__context__)):
            if sub is not None and id(sub) not in seen:
                record[key] = describe(sub, depth + 1, seen)  # type: ignore[literal-required]
        members = getattr(exc, "exceptions", None)
        if isinstance(exc, _GROUP) and isinstance(members, tuple):
            record["members"] = [describe(m, depth + 1, seen) for m in members[:MAX_MEMBERS]]
    return record


def _attributes(exc: BaseException) -> dict[str, Any]:
    """Every attribute of ``exc`` worth restoring: ``__dict__``, slots, C-level member fields."""
    out: dict[str, Any] = {}
    skip = _SKIP | (_SKIP_GROUP if isinstance(exc, _GROUP) else frozenset())
    for klass in type(exc).__mro__:
        if klass is object:
            continue
        names: list[str] = []
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else list(slots))
        if klass.__module__ == "builtins":  # C fields: errno, filename, name, path, code, value, ...
            names.extend(
                n
                for n, d in klass.__dict__.items()
                if type(d).__name__ in ("member_descriptor", "getset_descriptor")
            )
        for name in names:
            if name in skip or name in out or name.startswith("__"):
                continue
            try:
                out[name] = getattr(exc, name)
            except Exception:  # noqa: BLE001 - unset slot or field
                continue
    for name, value in getattr(exc, "__dict__", {}).items():
        if name not in skip:
            out[name] = value
    return out


def _blob(value: Any) -> str:
    blob = dumps_by_name(value)
    return blob if len(blob) <= MAX_BLOB else ""


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as err:  # noqa: BLE001 - a broken __str__
        return f"<str() of {type(exc).__name__} failed: {err!r}>"


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as err:  # noqa: BLE001 - a broken __repr__
        text = f"<repr() failed: {err!r}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 1] + "…"


def _traceback(exc: BaseException, chain: bool) -> str:
    try:
        text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__, chain=chain))
    except Exception:  # noqa: BLE001
        text = f"{type(exc).__qualname__}: {_safe_str(exc)}\n"
    text = trim_traceback(text)
    return text if len(text) <= MAX_TRACEBACK else "…\n" + text[-MAX_TRACEBACK:]


def trim_traceback(tb: str) -> str:
    """Drop frames of this package and of flamepy: the user's frames are what matters.

    When no frame is left (the call failed before any line of the function ran, e.g. a
    missing argument), a line says so instead of an empty traceback.
    """
    out: list[str] = []
    skip = False
    frames = dropped = 0
    for line in tb.splitlines(keepends=True):
        if line.startswith('  File "'):
            skip = FILENAME_PREFIX in line or "/flamepy/" in line or "flame_jupyter/remote/" in line
            frames += 1
            dropped += skip
        elif not line.startswith("    "):
            skip = False
        if not skip:
            out.append(line)
    if frames and frames == dropped and out and out[0].startswith("Traceback"):
        out[0] = (
            "Traceback: raised by the call itself, before any line of the function ran "
            "(check the call's arguments against the function's signature):\n"
        )
    return "".join(out)
