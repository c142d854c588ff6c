"""Importable code for the slot-policy tests; the tests copy this file into the project the Runner packages."""

from __future__ import annotations

import os

_SEEN: list[int] = []  # process state only: gone with the process (flamepy persists objects, not this)


def trivial(x: int) -> int:
    return x


class Keeper:
    """An instance service whose process keeps state of its own, like a ``%%flame --session``."""

    def bump(self) -> tuple[int, int]:
        """(how many bumps this process saw, its pid)."""
        _SEEN.append(1)
        return len(_SEEN), os.getpid()
