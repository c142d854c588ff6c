"""The one error every package stage raises (its ``str()`` is Flame's bind-failure detail)."""

from __future__ import annotations

__all__ = ["PackageError"]


class PackageError(Exception):
    """A package could not be downloaded, extracted or installed.

    ``stage`` is ``"download"``, ``"extract"`` or ``"install"``; ``message`` is the specific reason;
    ``str(err)`` is ``"application installation failed: <stage>: <message>"`` (Flame's bind detail).
    """

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        self.message = message
        super().__init__(f"application installation failed: {stage}: {message}")
