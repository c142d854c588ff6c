"""The kernel's half of an instance service's live state (the executor's: ``remote/execution.py``).

An instance service's object lives in its one instance between calls, as a Ray actor's does: it
is not saved to the object cache, nor reloaded and re-saved around each call. flamepy registers
it as a function service (not stateful) with one fixed instance (:func:`registration`).

When the instance that holds the object ends (its process exits or is killed, Flame loses its
executor, the embedded runtime reclaims it at ``max_processes``), the changes made there are
lost. That is never silent: each call carries what this kernel knows (:class:`~.remote.wire.Expect`:
the epoch, and how many calls of it ran), and a new instance, which holds only the object as
captured, refuses a call that expects changes (``this service's state was lost because ...``).
The kernel then starts a new epoch: calls made after that error run on the new copy.

Example::

    svc = runner.service(Counter(0))   # one instance; Counter lives there
    svc.add(1).get(), svc.add(1).get() # 1, 2 (no cache traffic for the state)
"""

from __future__ import annotations

import threading
from typing import Any

from flame_jupyter.future_state import state_of
from flame_jupyter.remote.wire import Expect, State

#: What both "state was lost" messages say: the embedded runtime's (an idle instance reclaimed)
#: and the executor's (a new instance refused a call: ``remote/execution.py``).
LOST_MARK = "state was lost because"


def registration(autoscale: bool | None, warmup: int) -> dict[str, Any]:
    """flamepy's service options for an instance: one fixed instance (flamepy's own rules for
    object services, which it no longer applies once the object is served as a callable)."""
    if autoscale is True:
        raise ValueError("Object instance services are always fixed. Omit autoscale or pass autoscale=False.")
    if warmup not in (0, 1):
        raise ValueError("Object instance services only support warmup=0 or warmup=1.")
    return {"autoscale": False, "warmup": warmup}


class LiveState:
    """What the calls of one instance service expect of its object (one per service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.epoch = 0  # state losses seen
        self.ran = 0  # calls of this epoch known to have run on the instance

    def expect(self) -> tuple[int, int]:
        """The value of :data:`~.remote.wire.EXPECT_KWARG` for the next call."""
        with self._lock:
            return tuple(Expect(self.epoch, self.ran))  # type: ignore[return-value]

    def follow(self, future: Any, sent: tuple[int, int]) -> None:
        """Learn from ``future``'s end (a call sent with ``sent``)."""
        state_of(future).add_finish_hook(lambda f: self._finished(f, Expect(*sent)))

    def _finished(self, future: Any, sent: Expect) -> None:
        fs = state_of(future)
        with self._lock:
            if sent.epoch != self.epoch:
                return  # sent before a loss this kernel has already seen
            if fs.state == State.DONE:
                self.ran += 1
            elif fs.state == State.FAILED:
                if LOST_MARK in str(fs.error):
                    self.epoch, self.ran = self.epoch + 1, 0
                elif getattr(fs.error, "remote_type", ""):  # raised on the instance: it ran there
                    self.ran += 1
