"""A :class:`~flame_jupyter.display.future_view.FutureView` as text/plain and text/html.

Used where there is no live widget (terminal IPython, nbconvert, GitHub, front ends without
widgets) and as the widget's own fallback in the saved notebook.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flame_jupyter.display.bundles import bundle_html
from flame_jupyter.display.states import COLORS, DONE, TERMINAL_STATES
from flame_jupyter.display.terminal import plain


def _where(view: Mapping[str, Any]) -> list[str]:
    parts = []
    if view.get("service") and view.get("service") != view.get("label"):
        parts.append(f"service {view['service']}")
    if view.get("app"):
        parts.append(f"app {view['app']}")
    if view.get("task_id"):
        parts.append(f"task {view['task_id']}")
    if view.get("session_id"):
        parts.append(f"session {view['session_id']}")
    return parts


def _progress_text(progress: Sequence[Any]) -> str:
    if len(progress) < 2:
        return ""
    done, total = progress[0], progress[1]
    msg = progress[2] if len(progress) > 2 else ""
    return f"{done}/{total}" + (f" {msg}" if msg else "")


def snapshot_text(view: Mapping[str, Any]) -> str:
    """text/plain rendering of a view (terminal IPython, logs)."""
    what = view.get("label") or view.get("service") or "call"
    lines = [
        f"<ObjectFuture {what!r} {view['state']} {float(view.get('elapsed') or 0):.1f}s "
        f"task={view.get('task_id') or None} session={view.get('session_id') or ''}>"
    ]
    if view.get("waiting"):
        lines.append(f"waiting: {view['waiting']}")
    if view.get("progress"):
        lines.append(f"progress: {_progress_text(view['progress'])}")
    chunks = view.get("output") or []
    if chunks:
        text = plain("".join(t for _, t in chunks))
        tail = text.splitlines()[-10:]
        lines.append("output (last lines):")
        lines.extend("  " + line for line in tail)
    if view["state"] == DONE:
        result = view.get("result") or {}
        if "text/plain" in result:
            body = str(result["text/plain"])
            lines.append("result: " + (body if "\n" not in body else "\n" + body))
        elif view.get("result_info"):
            lines.append(f"result: {view['result_info']}")
        if view.get("bound"):
            lines.append("bound in the notebook (-o): " + ", ".join(view["bound"]))
    if view.get("error_type") or view.get("error_message"):
        lines.append(f"{view.get('error_type') or 'Error'}: {view.get('error_message', '')}")
        if view.get("error_traceback"):
            lines.append("Remote traceback:")
            lines.append(str(view["error_traceback"]).rstrip())
    return "\n".join(lines)


def snapshot_html(view: Mapping[str, Any]) -> str:
    """text/html rendering of a view (nbconvert, GitHub, front ends without widgets)."""
    e = html.escape
    state = str(view["state"])
    what = view.get("label") or view.get("service") or "call"
    elapsed = float(view.get("elapsed") or 0)
    head = (
        f'<span style="color:#fff;background:{COLORS.get(state, "#888")};padding:0 5px;border-radius:3px">'
        f"{e(state)}</span> <b>{e(str(what))}</b> {elapsed:.1f} s"
    )
    where = _where(view)
    if where:
        head += f" <small>{e(' · '.join(where))}</small>"
    parts = [f'<div class="flame-future" data-state="{e(state)}">', f"<div>{head}</div>"]
    if view.get("waiting"):
        parts.append(f"<div><small>{e(str(view['waiting']))}</small></div>")
    progress = view.get("progress") or []
    if len(progress) >= 2:
        done, total = progress[0], progress[1]
        parts.append(
            f'<div><progress value="{e(str(done))}" max="{e(str(total or 1))}"></progress> '
            f"{e(_progress_text(progress))}</div>"
        )
    chunks = view.get("output") or []
    if chunks:
        body = "".join(
            f'<span style="color:#c62828">{e(plain(t))}</span>' if s == "stderr" else e(plain(t))
            for s, t in chunks
        )
        dropped = view.get("output_dropped") or 0
        more = f"… {dropped} earlier characters\n" if dropped else ""
        parts.append(f'<pre style="max-height:14em;overflow:auto">{e(more)}{body}</pre>')
    if state == DONE:
        result = view.get("result") or {}
        info = view.get("result_info") or ""
        if info:
            parts.append(f"<div><small>{e(str(info))}</small></div>")
        if view.get("bound"):
            parts.append(
                f"<div><small>bound in the notebook (-o): {e(', '.join(view['bound']))}</small></div>"
            )
        parts.append(bundle_html(result))
    if view.get("error_type") or view.get("error_message"):
        parts.append(
            f'<div style="color:#c62828"><b>{e(str(view.get("error_type") or "Error"))}</b>: '
            f"{e(str(view.get('error_message', '')))}</div>"
        )
        if view.get("error_traceback"):
            parts.append(f"<pre>{e(str(view['error_traceback']))}</pre>")
    if state not in TERMINAL_STATES:
        parts.append(
            f"<div><small>snapshot at {e(time.strftime('%H:%M:%S'))}; the live view needs a Jupyter "
            "front end with widgets</small></div>"
        )
    parts.append("</div>")
    return "".join(parts)
