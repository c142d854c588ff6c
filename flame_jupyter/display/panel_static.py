"""A :class:`~flame_jupyter.display.panel_view.PanelView` as a text table and an HTML table."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from flame_jupyter.display.states import STATES


def status_text(st: Mapping[str, Any]) -> str:
    """A plain-text table of the panel's data."""
    lines = [f"Flame: {st.get('runtime') or ''}".rstrip()]
    totals = st.get("totals", {})
    lines.append("  ".join(f"{s} {totals.get(s, 0)}" for s in STATES))
    if st.get("flame_error"):
        lines.append(st["flame_error"])
    services = st.get("services", [])
    if services:
        header = f"{'service':<20} {'session':<22} " + " ".join(f"{s:>9}" for s in STATES) + "  throughput"
        lines.append(header)
        for row in services:
            sid = row["session_id"] + (" (closed)" if row.get("closed") else "")
            counts = " ".join(f"{row['counts'][s]:>9}" for s in STATES)
            lines.append(f"{row['name'][:20]:<20} {sid[:22]:<22} {counts}  {row['throughput']:.2f}/s")
    else:
        lines.append("Nothing has run on Flame from this kernel yet.")
    failures = st.get("failures", [])
    if failures:
        lines.append("Recent failures:")
        for f in failures:
            lines.append(f"  {f['when']} {f['label'] or f['service']}: {f['error_type']}: {f['message']}")
    if st.get("show_instances"):
        lines.append("Embedded runtime instances:")
        for i in st.get("instances", []) or [{"id": "(none)", "state": "", "session_id": ""}]:
            lines.append(f"  {i['id']:<24} {i['state']:<10} {i['session_id']}")
    return "\n".join(lines)


def status_html(st: Mapping[str, Any]) -> str:
    """An HTML table of the panel's data (nbconvert, GitHub, front ends without widgets)."""
    e = html.escape
    totals = st.get("totals", {})
    parts = [
        '<div class="flame-panel">',
        f"<div><b>Flame</b> <small>{e(st.get('runtime') or '')}</small> ",
        " ".join(f"{e(s)} <b>{totals.get(s, 0)}</b>" for s in STATES),
        "</div>",
    ]
    if st.get("flame_error"):
        parts.append(f"<div><small>{e(st['flame_error'])}</small></div>")
    services = st.get("services", [])
    if services:
        parts.append("<table><tr><th>service</th><th>session</th>")
        parts.extend(f"<th>{s}</th>" for s in STATES)
        parts.append("<th>throughput</th></tr>")
        for row in services:
            parts.append(
                f"<tr><td>{e(row['name'])}</td><td>{e(row['session_id'])}{' (closed)' if row.get('closed') else ''}</td>"
            )
            parts.extend(f'<td style="text-align:right">{row["counts"][s]}</td>' for s in STATES)
            parts.append(f"<td>{row['throughput']:.2f}/s</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<div>Nothing has run on Flame from this kernel yet.</div>")
    failures = st.get("failures", [])
    if failures:
        parts.append("<div><b>Recent failures</b></div>")
        for f in failures:
            parts.append(
                f"<details><summary>{e(f['when'])} {e(f['label'] or f['service'])}: "
                f"<b>{e(f['error_type'])}</b>: {e(f['message'])}</summary><pre>{e(f['traceback'])}</pre></details>"
            )
    if st.get("show_instances"):
        parts.append("<div><b>Embedded runtime instances</b></div><table>")
        for i in st.get("instances", []):
            parts.append(
                f"<tr><td>{e(i['id'])}</td><td>{e(i['state'])}</td><td>{e(i['session_id'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


class PanelSnapshot:
    """The panel's data at one moment, for places without widgets (prints as a table)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return status_text(self.data)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": status_text(self.data), "text/html": status_html(self.data)}
