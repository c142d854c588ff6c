"""``FutureView``: everything a future's view shows, declared once, read from a future in one go.

The static renderings (:mod:`~flame_jupyter.display.future_static`) and the live widget
(:class:`~flame_jupyter.widgets.future_widget.FutureWidget`, whose synced traits are made from
:class:`FutureView`'s fields) show exactly these fields; the widget's JavaScript reads them by the
names templated from :data:`FUTURE_VIEW_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from flame_jupyter.display.bundles import PLAIN_CHARS, result_info, rich_bundle, trim_bundle
from flame_jupyter.display.protocol import ViewedFuture
from flame_jupyter.display.states import CANCELLED, DONE, FAILED, QUEUED
from flame_jupyter.display.terminal import squeeze

OUTPUT_TAIL_CHARS = 6_000  # stdout/stderr kept in a view (the tail)
TRACEBACK_CHARS = 20_000
DISPLAYS_KEPT = 5


class FutureView(TypedDict):
    """The JSON-ready state of one future's view (the widget syncs each field as a trait)."""

    state: str  # queued, running, done, failed or cancelled
    label: str
    service: str
    app: str
    session_id: str
    task_id: str
    elapsed: float
    run_time: float | None
    progress: list[Any]  # [done, total, message] or []
    output: list[list[str]]  # [[stream, text], ...]: the tail
    output_dropped: int  # characters before the tail
    displays: list[dict[str, Any]]  # the last rich displays of the remote code
    result: dict[str, Any]  # trimmed mime bundle of the result
    result_info: str  # "DataFrame 4×3", "None", "int"
    bound: list[str]  # the names a ``%%flame -o`` cell binds in the notebook
    echoed: bool  # a blocking cell streamed the output into the cell: the view leaves it out
    error_type: str
    error_message: str
    error_traceback: str
    cancel_requested: bool
    waiting: str  # what a queued call waits for ("queued behind 2 calls"), else ""


FUTURE_VIEW_KEYS: tuple[str, ...] = tuple(FutureView.__annotations__)
#: Fields synced (widget state, saved notebooks, tools) that the live view does not draw.
FUTURE_FIELDS_NOT_DRAWN: tuple[str, ...] = ("run_time",)


def future_view(
    future: ViewedFuture, *, result: Mapping[str, Any] | None = None, output_total: int | None = None
) -> FutureView:
    """Everything a view shows, read once from the future (JSON-ready; never blocks).

    ``result`` is ``{"result": bundle, "result_info": str}`` fetched by the widget when the future
    carries no remote ``preview``; ``output_total`` is the number of output characters so far, when
    the caller keeps count (otherwise it is summed here).
    """
    state = future.known_state
    echoed = bool(getattr(future, "output_echoed", False))
    output = [] if echoed else future.output
    if output_total is None:
        output_total = sum(len(str(t)) for _, t in list(output))
    chunks, dropped = output_tail(output[-OUTPUT_TAIL_CHARS:], total=output_total)
    progress = future.progress
    view: FutureView = {
        "state": state,
        "label": str(future.label or ""),
        "service": str(future.service or ""),
        "app": str(future.app or ""),
        "session_id": str(future.session_id or ""),
        "task_id": "" if future.task_id is None else str(future.task_id),
        "elapsed": round(future.elapsed, 3),
        "run_time": None if future.run_time is None else round(future.run_time, 3),
        "progress": []
        if not progress
        else [_number(progress[0]), _number(progress[1]), str(progress[2] or "")],
        "output": chunks,
        "output_dropped": dropped,
        "displays": [] if echoed else [trim_bundle(b) for b in list(future.displays)[-DISPLAYS_KEPT:]],
        "result": {},
        "result_info": "",
        "bound": [str(n) for n in getattr(future, "bound_names", ()) or ()],
        "echoed": echoed,
        "error_type": "",
        "error_message": "",
        "error_traceback": "",
        "cancel_requested": bool(future.cancel_requested),
        "waiting": str(future.known_waiting or "") if state == QUEUED else "",
    }
    if state == DONE:
        preview = future.preview
        if preview:
            view["result"] = trim_bundle(preview)
            view["result_info"] = result_info(preview)
        elif result is not None:
            view["result"] = dict(result.get("result") or {})
            view["result_info"] = str(result.get("result_info") or "")
        elif future.result_loaded:  # the user already fetched it: free to show
            value = future.loaded_result
            view["result"] = rich_bundle(value)
            view["result_info"] = type(value).__name__ if value is not None else "None"
    elif state in (FAILED, CANCELLED) and future.error is not None:
        view["error_type"], view["error_message"], view["error_traceback"] = error_fields(future.error)
    return view


def describe(value: Any) -> str:
    """A result's summary: ``None``, ``DataFrame 4×3``, ``ndarray 10×2 float64``, else its type name."""
    if value is None:
        return "None"
    name = type(value).__name__
    shape = getattr(value, "shape", None)
    if not (isinstance(shape, tuple) and shape and all(isinstance(n, int) for n in shape)):
        return name
    dtype = getattr(value, "dtype", None)
    dims = "×".join(str(n) for n in shape)
    return f"{name} {dims}" + (f" {dtype}" if dtype is not None else "")


def error_fields(error: BaseException) -> tuple[str, str, str]:
    """(type, message, remote traceback) of a failure, for display."""
    from flame_jupyter.errors import CancelledError, RemoteError

    etype = getattr(error, "remote_type", "") or type(error).__name__
    if isinstance(error, RemoteError):
        message = str(error.args[0]) if error.args else ""
        tb = error.remote_traceback or ""
    else:
        message = str(error)
        tb = getattr(error, "remote_traceback", "") or ""  # a remote error rebuilt as its own type
        if not tb and "\n\nRemote traceback:\n" in message:
            message, tb = message.split("\n\nRemote traceback:\n", 1)
    if isinstance(error, CancelledError):
        etype = "Cancelled"
    if len(tb) > TRACEBACK_CHARS:
        tb = "…\n" + tb[-TRACEBACK_CHARS:]
    return etype, message[:PLAIN_CHARS], tb


def output_tail(
    chunks: Sequence[tuple[str, str]], limit: int = OUTPUT_TAIL_CHARS, total: int | None = None
) -> tuple[list[list[str]], int]:
    """The last ``limit`` characters of the (stream, text) chunks, same-stream neighbours merged.

    Returns (chunks, number of earlier characters left out). ``total`` (all characters so far)
    saves a pass over long outputs when the caller keeps count.
    """
    kept: list[list[str]] = []
    size = consumed = 0
    index = len(chunks) - 1
    while index >= 0 and size < limit:
        stream, raw = chunks[index]
        text = squeeze(str(raw))  # a progress bar's overwritten states take no room
        part = text[-(limit - size) :]
        size += len(part)
        consumed += len(str(raw)) if len(part) == len(text) else len(part)
        if kept and kept[0][0] == stream:
            kept[0][1] = part + kept[0][1]
        else:
            kept.insert(0, [str(stream), part])
        index -= 1
    if total is None:
        total = sum(len(str(t)) for _, t in chunks)
    return kept, max(0, total - consumed)


def _number(x: Any) -> float | int:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return 0
    return int(f) if f.is_integer() else f
