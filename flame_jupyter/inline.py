"""A call's result that came back inside its batch's result (no object of its own in the cache).

A coalesced call (:mod:`flame_jupyter.pipes`) ends with its value in hand: ``get()`` returns it
without a download. Its ObjectRef exists only if asked for (passing the future into another
call, ``fj.ref``): the value is then stored once under the Runner's shared prefix, which the
Runner deletes when it closes.
"""

from __future__ import annotations

import threading
from typing import Any


class InlineResult:
    """The value of a finished call, and its ObjectRef once someone needs one."""

    __slots__ = ("value", "_prefix", "_ref", "_lock")

    def __init__(self, value: Any, prefix: str) -> None:
        self.value = value
        self._prefix = prefix
        self._ref: Any = None
        self._lock = threading.Lock()

    def ref(self) -> Any:
        """The value's ObjectRef (stored in the object cache on first use)."""
        with self._lock:
            if self._ref is None:
                from flamepy.core import put_object

                self._ref = put_object(self._prefix, self.value)
            return self._ref


def inline_of(inner: Any) -> InlineResult | None:
    """The :class:`InlineResult` a finished inner future holds, if its call came back inline."""
    if not inner.done() or inner.cancelled() or inner.exception() is not None:
        return None
    value = inner.result()
    return value if isinstance(value, InlineResult) else None
