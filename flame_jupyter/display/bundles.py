"""Display bundles made safe to show: known mime types, bounded sizes; their HTML; result sizes."""

from __future__ import annotations

import html
import sys
from collections.abc import Mapping
from typing import Any

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# optional {"type": str, "size": int} in a remote preview
RESULT_INFO_MIME = "application/vnd.flame.result-info+json"
SIZE_MIME = "application/x-flame-size"  # the estimated result size the SDK adds to a remote preview

PLAIN_CHARS = 4_000
HTML_CHARS = 200_000
IMAGE_CHARS = 1_500_000  # base64
PREVIEW_MIMES = ("text/html", "image/png", "image/jpeg", "image/gif", "image/svg+xml", "text/plain")


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
