"""Importable code for the slot-lending flows; the tests copy this file into the project the Runner packages."""

from __future__ import annotations

import os
import time


def work(seconds: float) -> tuple[float, float, int]:
    """Busy for ``seconds``; returns (start, end, pid) so the test can count overlaps."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time(), os.getpid()


def fan_out(inner_app: str, n: int, seconds: float) -> list[tuple[float, float, int]]:
    """Create ``n`` tasks of ``work`` on the registered ``inner_app`` and wait for all of them."""
    from flamepy.runner import Runner

    with Runner(inner_app) as inner:
        svc = inner.service(work)
        try:
            futures = [svc(seconds) for _ in range(n)]
            return [f.get() for f in futures]
        finally:
            svc.close()


class Deep:
    """Calls itself through a new Runner on the same session (open_session) ``n`` times."""

    _session_context = None

    def depth(self, n: int) -> tuple[int, list[int]]:
        """(2 ** n, the pids of every level, outermost first)."""
        from flamepy.runner import Runner

        ctx = self._session_context
        if ctx is None:
            raise ValueError("Deep needs a _session_context")
        if n <= 0:
            return 1, [os.getpid()]
        with Runner(ctx.application_name) as inner:
            svc = inner.service(type(self), autoscale=True)
            value, pids = svc.depth(n - 1).get()
            return 2 * value, [os.getpid(), *pids]
