"""A failed task's error text on any Flame: from its events when flamepy's watch had none.

Flame v0.6.0 streams watched tasks without their events, so flamepy's future fails with
"Task failed without error message" on a cluster; the task's own failure event (which carries
the remote exception record, see :mod:`flame_jupyter.failures`) is read with GetTask instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flame_jupyter import _flamepy
from flame_jupyter.failures import decode_failure
from flame_jupyter.remote import wire

NO_MESSAGE = "without error message"  # flamepy's text when the watched task had no failure event


def decoder(session: Any, task_id: str | None) -> Callable[[BaseException], BaseException]:
    """``decode_failure`` that first replaces a message-less flamepy error by the task's event text."""

    def decode(exc: BaseException) -> BaseException:
        text = getattr(exc, "message", None) or str(exc)
        if wire.decode_failure(text) is None and NO_MESSAGE in text:
            found = _flamepy.failure_text(session, task_id)
            if found:
                from flamepy.core.types import FlameError, FlameErrorCode  # not all of flamepy at exit

                exc = FlameError(FlameErrorCode.INTERNAL, found)
        return decode_failure(exc)

    return decode
