"""Small rich representations of remote objects, made without IPython (displays, previews)."""

from __future__ import annotations

import sys
from typing import Any


def mime_bundle(obj: Any, limit: int = 200_000) -> dict[str, Any]:
    """A small rich representation of ``obj`` (IPython-style ``_repr_*_``), without IPython."""
    bundle: dict[str, Any] = {}
    for mime, meth in (
        ("text/html", "_repr_html_"),
        ("image/png", "_repr_png_"),
        ("image/svg+xml", "_repr_svg_"),
        ("text/markdown", "_repr_markdown_"),
        ("text/latex", "_repr_latex_"),
    ):
        fn = getattr(obj, meth, None)
        if fn is None or isinstance(obj, type):
            continue
        try:
            value = fn()
        except Exception:  # noqa: BLE001 - a broken repr must not fail the call
            continue
        if isinstance(value, tuple):
            value = value[0]
        if value is None:
            continue
        if isinstance(value, bytes):
            import base64

            value = base64.b64encode(value).decode("ascii")
        if isinstance(value, str) and len(value) <= limit:
            bundle[mime] = value
    try:
        text = repr(obj)
    except Exception as exc:  # noqa: BLE001
        text = f"<unrepresentable {type(obj).__name__}: {exc}>"
    bundle["text/plain"] = text if len(text) <= 2000 else text[:2000] + " ..."
    return bundle


def estimate_size(obj: Any) -> int:
    """A cheap size estimate of a result (numpy/pandas/arrow aware)."""
    for attr in ("nbytes",):
        value = getattr(obj, attr, None)
        if isinstance(value, int):
            return value
    mu = getattr(obj, "memory_usage", None)
    if callable(mu) and type(obj).__module__.startswith("pandas"):
        try:
            total = mu(deep=False)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        except Exception:  # noqa: BLE001
            return 0
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    return sys.getsizeof(obj)
