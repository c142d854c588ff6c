"""Streamed text as a terminal shows it: ``\\r`` returns to the start of the line (progress bars
such as tqdm redraw one line), ANSI escape codes carry no text."""

from __future__ import annotations

import re

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def _last(line: str) -> str:
    """What a line shows after its carriage returns: its last non-empty part."""
    for part in reversed(line.split("\r")):
        if part:
            return part
    return ""


def apply_cr(text: str) -> str:
    """``"a\\rb\\nc"`` -> ``"b\\nc"``: each line is what follows its last ``\\r`` (``\\r\\n`` is a newline)."""
    if "\r" not in text:
        return text
    return "\n".join(_last(line) for line in text.replace("\r\n", "\n").split("\n"))


def squeeze(text: str) -> str:
    """Drop overwritten states but keep the ``\\r`` markers: ``"x\\rA\\rB"`` -> ``"\\rB"``.

    Joining squeezed pieces and then :func:`apply_cr` gives what :func:`apply_cr` of the whole
    gives, so a view can keep a short tail of a long progress-bar stream.
    """
    if "\r" not in text:
        return text
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            line = "\r" + _last(line) + ("\r" if line.endswith("\r") else "")
        out.append(line)
    return "\n".join(out)


def plain(text: str) -> str:
    """Text as shown, without escape codes (static renderings)."""
    return ANSI.sub("", apply_cr(text))
