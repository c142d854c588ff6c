"""How a remote exception travels back: inside Flame's own failure message, and out again.

Flame carries one string per failed task (``TaskResult.message`` -> the task's code-3 event ->
flamepy's ``FlameError``). The remote side (:mod:`flame_jupyter.remote`) makes that string
``"<Type>: <message>"`` for any reader, followed by a marked, base64 JSON record with the
exception's type, module, message and formatted traceback. :func:`decode_failure` turns the
``FlameError`` back into an exception of the remote type where the type is known here (so
``except ValueError`` works), carrying the remote traceback.
"""

from __future__ import annotations

import base64
import builtins
import json
import sys
from typing import Any

from flame_jupyter.errors import CancelledError, RemoteError

MARK_START = "\n<<flame-jupyter-error:"
MARK_END = ">>"
CANCELLED_TYPE = "flame_jupyter.Cancelled"


def encode(type_module: str, type_name: str, message: str, tb: str) -> str:
    """The failure text for a remote exception (used by the remote side; kept here for tests)."""
    record = {"module": type_module, "type": type_name, "message": message, "traceback": tb}
    blob = base64.b64encode(json.dumps(record).encode()).decode()
    return f"{type_name}: {message}{MARK_START}{blob}{MARK_END}"


def parse(text: str) -> dict[str, str] | None:
    start = text.find(MARK_START)
    if start < 0:
        return None
    end = text.find(MARK_END, start + len(MARK_START))
    if end < 0:
        return None
    try:
        return json.loads(base64.b64decode(text[start + len(MARK_START) : end]))
    except (ValueError, TypeError):
        return None


_dynamic: dict[tuple[str, str], type] = {}


def _remote_class(module: str, name: str) -> type[RemoteError]:
    """``RemoteError`` combined with the remote exception type, when that type exists here."""
    key = (module, name)
    if key in _dynamic:
        return _dynamic[key]
    base: type | None = None
    if module == "builtins":
        base = getattr(builtins, name, None)
    elif module in sys.modules:
        obj: Any = sys.modules[module]
        for part in name.split("."):
            obj = getattr(obj, part, None)
        base = obj if isinstance(obj, type) else None
    if base is None or not issubclass(base, Exception) or issubclass(base, RemoteError):
        cls: type = RemoteError
    else:
        try:
            cls = type(
                name.rsplit(".", 1)[-1],
                (RemoteError, base),
                {"__module__": module, "__init__": RemoteError.__init__, "__str__": RemoteError.__str__},
            )
        except TypeError:  # an incompatible layout (some C exceptions): plain RemoteError
            cls = RemoteError
    _dynamic[key] = cls
    return cls


def decode_failure(exc: BaseException) -> BaseException:
    """Turn what a failed task's future raised into the exception to show the user."""
    text = getattr(exc, "message", None) or str(exc)
    record = parse(text)
    if record is None:
        if isinstance(exc, Exception) and type(exc).__name__ == "FlameError":
            return RemoteError(_explain_lost_connection(text), remote_type="", remote_traceback="")
        return exc
    module, name = record.get("module", ""), record.get("type", "Exception")
    if f"{module}.{name}" == CANCELLED_TYPE or name == "Cancelled" and module == "flame_jupyter":
        return CancelledError(record.get("message") or "cancelled")
    cls = _remote_class(module, name)
    err = cls.__new__(cls)
    RemoteError.__init__(
        err,
        f"{record.get('message', '')}",
        remote_type=f"{module}.{name}" if module not in ("builtins", "") else name,
        remote_traceback=record.get("traceback", ""),
    )
    return err


_LOST = ("Socket closed", "failed to connect", "Connection refused", "shutting down", "Stream removed")


def _explain_lost_connection(text: str) -> str:
    """flamepy reports a watch that lost its server as a transport detail; say what it means."""
    if text.startswith("failed to watch task") and any(s in text for s in _LOST):
        return (
            f"lost the connection to Flame while waiting for this task ({text}): the runtime stopped or "
            "cannot be reached, so the task's outcome is unknown"
        )
    return text
