"""How an ObjectFuture shows itself: a live widget in a Jupyter kernel, text/html + text/plain elsewhere.

``ObjectFuture._repr_mimebundle_`` calls :func:`future_mimebundle`. In a kernel with widget
support (ipykernel + ipywidgets + anywidget) the bundle holds the live widget view *and* static
``text/html`` / ``text/plain`` snapshots, so nbconvert, GitHub, VS Code without widgets and saved
notebooks still show the state, result or error. Terminal IPython and scripts get the snapshots
only. ``FLAME_JUPYTER_WIDGETS=0`` (or :func:`set_widgets`) turns the widgets off.

Example
-------
>>> from flame_jupyter.views import set_widgets
>>> set_widgets(False)      # plain HTML snapshots, e.g. for a notebook converted to a report
>>> set_widgets(None)       # back to automatic
"""

from __future__ import annotations

import html
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_jupyter.futures import ObjectFuture

log = logging.getLogger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# optional {"type": str, "size": int} in a remote preview
RESULT_INFO_MIME = "application/vnd.flame.result-info+json"
SIZE_MIME = "application/x-flame-size"  # the estimated result size the SDK adds to a remote preview
TERMINAL = ("done", "failed", "cancelled")

OUTPUT_TAIL_CHARS = 6_000  # stdout/stderr kept in a view (the tail)
TRACEBACK_CHARS = 20_000
PLAIN_CHARS = 4_000
HTML_CHARS = 200_000
IMAGE_CHARS = 1_500_000  # base64
DISPLAYS_KEPT = 5
PREVIEW_MIMES = ("text/html", "image/png", "image/jpeg", "image/gif", "image/svg+xml", "text/plain")

_override: bool | None = None


# -- when to use widgets -----------------------------------------------------------------------------
def set_widgets(enabled: bool | None) -> None:
    """Force widgets on (True) or off (False); None restores the automatic choice."""
    global _override
    _override = enabled


def widgets_enabled() -> bool:
    """True when futures should render as live widgets: an IPython kernel with ipywidgets + anywidget."""
    if _override is not None:
        return _override
    if os.environ.get("FLAME_JUPYTER_WIDGETS", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # terminal IPython, or a plain script
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def future_mimebundle(future: ObjectFuture) -> dict[str, Any]:
    """The display bundle of a future: the live widget where possible, always text/html + text/plain."""
    if widgets_enabled():
        try:
            from flame_jupyter.widgets.future_widget import widget_for

            return widget_for(future)._repr_mimebundle_()
        except Exception:  # noqa: BLE001 - a broken widget stack must not hide the future
            log.exception("flame_jupyter: the future widget failed; showing a static view")
    snap = future_snapshot(future)
    return {"text/plain": snapshot_text(snap), "text/html": snapshot_html(snap)}


def show(future: ObjectFuture) -> Any:
    """Display a future so that its *saved* output ends up final as well.

    Like making the future a cell's value (live widget), plus: once the future finished, the
    output's text/html and text/plain are replaced by the final snapshot (``update_display``), so
    a notebook saved without widget state (nbconvert, GitHub, front ends without widgets) shows the
    result or the error, not "running". Returns the IPython ``DisplayHandle``.

    >>> from flame_jupyter.views import show
    >>> show(scorer(3))          # doctest: +SKIP
    """
    from IPython.display import display

    bundle = future_mimebundle(future)
    handle = display(bundle, raw=True, display_id=True)
    if handle is None:
        return None
    if WIDGET_MIME in bundle:
        from flame_jupyter.widgets.future_widget import widget_for

        widget_for(future).on_settled(lambda w: handle.update(w._repr_mimebundle_(), raw=True))
    elif not future.done():

        def finished(f: ObjectFuture) -> None:
            if f.known_state in TERMINAL:
                f.remove_listener(finished)
                snap = future_snapshot(f)
                handle.update({"text/plain": snapshot_text(snap), "text/html": snapshot_html(snap)}, raw=True)

        future.add_listener(finished)
    return handle


# -- the state of a future, as plain JSON --------------------------------------------------------------
def future_snapshot(
    future: ObjectFuture, *, result: Mapping[str, Any] | None = None, output_total: int | None = None
) -> dict[str, Any]:
    """Everything a view shows, read once from the future (JSON-ready; never blocks).

    ``result`` is ``{"result": bundle, "result_info": str}`` fetched by the widget when the future
    carries no remote ``preview``; ``output_total`` is the number of output characters so far, when
    the caller keeps count (otherwise it is summed here).
    """
    state = future.known_state
    output = future.output
    if output_total is None:
        output_total = sum(len(str(t)) for _, t in list(output))
    chunks, dropped = output_tail(output[-OUTPUT_TAIL_CHARS:], total=output_total)
    progress = future.progress
    snap: dict[str, Any] = {
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
        "displays": [trim_bundle(b) for b in list(future.displays)[-DISPLAYS_KEPT:]],
        "result": {},
        "result_info": "",
        "error_type": "",
        "error_message": "",
        "error_traceback": "",
        "cancel_requested": bool(future.cancel_requested),
    }
    if state == "done":
        preview = future.preview
        if preview:
            snap["result"] = trim_bundle(preview)
            snap["result_info"] = result_info(preview)
        elif result is not None:
            snap["result"] = dict(result.get("result") or {})
            snap["result_info"] = str(result.get("result_info") or "")
        elif future.result_loaded:  # the user already fetched it: free to show
            value = getattr(future, "_result", None)
            snap["result"] = rich_bundle(value)
            snap["result_info"] = type(value).__name__
    elif state in ("failed", "cancelled") and future.error is not None:
        snap["error_type"], snap["error_message"], snap["error_traceback"] = error_fields(future.error)
    return snap


def error_fields(error: BaseException) -> tuple[str, str, str]:
    """(type, message, remote traceback) of a failure, for display."""
    from flame_jupyter.errors import CancelledError, RemoteError

    etype = getattr(error, "remote_type", "") or type(error).__name__
    if isinstance(error, RemoteError):
        message = str(error.args[0]) if error.args else ""
        tb = error.remote_traceback or ""
    else:
        message = str(error)
        tb = ""
        if "\n\nRemote traceback:\n" in message:
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
    size = 0
    index = len(chunks) - 1
    while index >= 0 and size < limit:
        stream, text = chunks[index]
        text = str(text)
        part = text[-(limit - size) :]
        size += len(part)
        if kept and kept[0][0] == stream:
            kept[0][1] = part + kept[0][1]
        else:
            kept.insert(0, [str(stream), part])
        index -= 1
    if total is None:
        total = sum(len(str(t)) for _, t in chunks)
    return kept, max(0, total - size)


def trim_bundle(bundle: Mapping[str, Any] | None) -> dict[str, Any]:
    """A display bundle reduced to what a view can show safely: known types, bounded sizes."""
    if not bundle:
        return {}
    out: dict[str, Any] = {}
    for mime in PREVIEW_MIMES:
        value = bundle.get(mime)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):  # nbformat may split text into lines
            value = "".join(str(v) for v in value)
        if isinstance(value, bytes):
            import base64

            value = (
                base64.b64encode(value).decode()
                if mime.startswith("image/") and mime != "image/svg+xml"
                else value.decode("utf-8", "replace")
            )
        value = str(value)
        if mime == "text/plain":
            if len(value) > PLAIN_CHARS:
                value = value[:PLAIN_CHARS] + f"\n… ({len(value) - PLAIN_CHARS} more characters)"
        elif mime in ("text/html", "image/svg+xml"):
            if len(value) > HTML_CHARS:
                continue
        elif len(value) > IMAGE_CHARS:
            continue
        out[mime] = value
    if not out and bundle:
        out["text/plain"] = f"({', '.join(sorted(bundle))})"
    return out


def rich_bundle(value: Any) -> dict[str, Any]:
    """The rich repr of a value as a trimmed bundle (IPython's formatters when in IPython)."""
    data: Mapping[str, Any] = {}
    try:
        data, _ = _formatter().format(value)
    except Exception:  # noqa: BLE001 - a broken _repr_html_ (or no IPython) falls back to repr()
        data = {}
    if not data:
        try:
            text = repr(value)
        except Exception as e:  # noqa: BLE001
            text = f"<unrepresentable {type(value).__name__}: {e}>"
        data = {"text/plain": text}
    return trim_bundle(data)


_standalone_formatter: Any = None


def _formatter() -> Any:
    """The shell's display formatter (user-registered formatters included), else a standalone one."""
    global _standalone_formatter
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        return shell.display_formatter
    if _standalone_formatter is None:
        from IPython.core.formatters import DisplayFormatter

        _standalone_formatter = DisplayFormatter()
    return _standalone_formatter


def result_info(preview: Mapping[str, Any]) -> str:
    """'DataFrame · 12.0 KB' from what a remote preview says about the result (type, size)."""
    info = preview.get(RESULT_INFO_MIME)
    info = info if isinstance(info, Mapping) else {}
    size = info.get("size", preview.get(SIZE_MIME))
    parts = [str(info["type"])] if info.get("type") else []
    if isinstance(size, (int, float)) and not isinstance(size, bool) and size >= 0:
        parts.append(f"≈ {human_size(int(size))}" if not parts else human_size(int(size)))
    if parts:
        parts.append("preview made remotely; .get() fetches the result")
    return " · ".join(parts)


def human_size(n: int) -> str:
    """1536 -> '1.5 KB'."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _number(x: Any) -> float | int:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return 0
    return int(f) if f.is_integer() else f


# -- static renderings ----------------------------------------------------------------------------------
def _where(snap: Mapping[str, Any]) -> list[str]:
    parts = []
    if snap.get("service") and snap.get("service") != snap.get("label"):
        parts.append(f"service {snap['service']}")
    if snap.get("app"):
        parts.append(f"app {snap['app']}")
    if snap.get("task_id"):
        parts.append(f"task {snap['task_id']}")
    if snap.get("session_id"):
        parts.append(f"session {snap['session_id']}")
    return parts


def _progress_text(progress: Sequence[Any]) -> str:
    if len(progress) < 2:
        return ""
    done, total = progress[0], progress[1]
    msg = progress[2] if len(progress) > 2 else ""
    return f"{done}/{total}" + (f" {msg}" if msg else "")


def snapshot_text(snap: Mapping[str, Any]) -> str:
    """text/plain rendering of a snapshot (terminal IPython, logs)."""
    what = snap.get("label") or snap.get("service") or "call"
    lines = [
        f"<ObjectFuture {what!r} {snap['state']} {float(snap.get('elapsed') or 0):.1f}s "
        f"task={snap.get('task_id') or None} session={snap.get('session_id') or ''}>"
    ]
    if snap.get("progress"):
        lines.append(f"progress: {_progress_text(snap['progress'])}")
    chunks = snap.get("output") or []
    if chunks:
        text = "".join(t for _, t in chunks)
        tail = text.splitlines()[-10:]
        lines.append("output (last lines):")
        lines.extend("  " + line for line in tail)
    if snap["state"] == "done":
        result = snap.get("result") or {}
        if "text/plain" in result:
            body = str(result["text/plain"])
            lines.append("result: " + (body if "\n" not in body else "\n" + body))
        elif snap.get("result_info"):
            lines.append(f"result: {snap['result_info']}")
    if snap.get("error_type") or snap.get("error_message"):
        lines.append(f"{snap.get('error_type') or 'Error'}: {snap.get('error_message', '')}")
        if snap.get("error_traceback"):
            lines.append("Remote traceback:")
            lines.append(str(snap["error_traceback"]).rstrip())
    return "\n".join(lines)


_COLORS = {
    "queued": "#8a8f98",
    "running": "#1976d2",
    "done": "#388e3c",
    "failed": "#d32f2f",
    "cancelled": "#f57c00",
}


def snapshot_html(snap: Mapping[str, Any]) -> str:
    """text/html rendering of a snapshot (nbconvert, GitHub, front ends without widgets)."""
    e = html.escape
    state = str(snap["state"])
    what = snap.get("label") or snap.get("service") or "call"
    elapsed = float(snap.get("elapsed") or 0)
    head = (
        f'<span style="color:#fff;background:{_COLORS.get(state, "#888")};padding:0 5px;border-radius:3px">'
        f"{e(state)}</span> <b>{e(str(what))}</b> {elapsed:.1f} s"
    )
    where = _where(snap)
    if where:
        head += f" <small>{e(' · '.join(where))}</small>"
    parts = [f'<div class="flame-future" data-state="{e(state)}">', f"<div>{head}</div>"]
    progress = snap.get("progress") or []
    if len(progress) >= 2:
        done, total = progress[0], progress[1]
        parts.append(
            f'<div><progress value="{e(str(done))}" max="{e(str(total or 1))}"></progress> '
            f"{e(_progress_text(progress))}</div>"
        )
    chunks = snap.get("output") or []
    if chunks:
        body = "".join(
            f'<span style="color:#c62828">{e(t)}</span>' if s == "stderr" else e(t) for s, t in chunks
        )
        dropped = snap.get("output_dropped") or 0
        more = f"… {dropped} earlier characters\n" if dropped else ""
        parts.append(f'<pre style="max-height:14em;overflow:auto">{e(more)}{body}</pre>')
    if state == "done":
        result = snap.get("result") or {}
        info = snap.get("result_info") or ""
        if info:
            parts.append(f"<div><small>{e(str(info))}</small></div>")
        parts.append(bundle_html(result))
    if snap.get("error_type") or snap.get("error_message"):
        parts.append(
            f'<div style="color:#c62828"><b>{e(str(snap.get("error_type") or "Error"))}</b>: '
            f"{e(str(snap.get('error_message', '')))}</div>"
        )
        if snap.get("error_traceback"):
            parts.append(f"<pre>{e(str(snap['error_traceback']))}</pre>")
    if state not in TERMINAL:
        parts.append(
            f"<div><small>snapshot at {e(time.strftime('%H:%M:%S'))}; the live view needs a Jupyter "
            "front end with widgets</small></div>"
        )
    parts.append("</div>")
    return "".join(parts)


def bundle_html(bundle: Mapping[str, Any]) -> str:
    """A trimmed bundle as HTML (its richest representation)."""
    if not bundle:
        return ""
    if bundle.get("text/html"):
        return f"<div>{bundle['text/html']}</div>"
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if bundle.get(mime):
            return f'<img src="data:{mime};base64,{bundle[mime]}">'
    if bundle.get("image/svg+xml"):
        return f"<div>{bundle['image/svg+xml']}</div>"
    if "text/plain" in bundle:
        return f"<pre>{html.escape(str(bundle['text/plain']))}</pre>"
    return ""
