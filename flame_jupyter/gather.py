"""Many futures at once: ``get``, ``ref``, ``wait``, ``select``, ``as_completed``.

They take flame_jupyter's :class:`~flame_jupyter.futures.ObjectFuture` and plain flamepy
``ObjectFuture`` alike (re-exported by :mod:`flame_jupyter.futures` and the package).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as _wait_futures
from typing import Any

from flamepy.runner.runner import ObjectFuture as _FlamepyObjectFuture

from flame_jupyter import _flamepy

ObjectFuture = _FlamepyObjectFuture  # for the annotations below: any flamepy ObjectFuture


# -- many futures ----------------------------------------------------------------------------------
def get(futures: ObjectFuture | Iterable[ObjectFuture], timeout: float | None = None) -> Any:
    """Results of one future or a list of futures (in order)."""
    if isinstance(futures, _FlamepyObjectFuture):
        return futures.get() if timeout is None else _get_one(futures, timeout)
    items = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    return [_get_one(f, None if deadline is None else max(0.0, deadline - time.monotonic())) for f in items]


def _get_one(f: _FlamepyObjectFuture, timeout: float | None) -> Any:
    if hasattr(f, "_wait_or_cancel"):  # flame_jupyter's ObjectFuture: get() takes a timeout
        return f.get(timeout)
    if timeout is not None:
        _flamepy.inner_future(f).exception(timeout)
    return f.get()


def ref(futures: ObjectFuture | Iterable[ObjectFuture]) -> Any:
    """ObjectRefs of one future or a list of futures, without downloading anything."""
    if isinstance(futures, _FlamepyObjectFuture):
        return futures.ref()
    return [f.ref() for f in futures]


def wait(
    futures: Iterable[ObjectFuture], timeout: float | None = None, return_when: str = "ALL_COMPLETED"
) -> tuple[list[ObjectFuture], list[ObjectFuture]]:
    """Like ``concurrent.futures.wait``: (done, not_done) lists, original order kept."""
    items = list(futures)
    by_inner = {id(_flamepy.inner_future(f)): f for f in items}
    done, _ = _wait_futures(
        [_flamepy.inner_future(f) for f in items], timeout=timeout, return_when=return_when
    )
    done_ids = {id(d) for d in done}
    return [f for f in items if id(_flamepy.inner_future(f)) in done_ids], [
        f
        for f in items
        if id(_flamepy.inner_future(f)) not in done_ids and id(_flamepy.inner_future(f)) in by_inner
    ]


def select(futures: Iterable[ObjectFuture], timeout: float | None = None) -> ObjectFuture:
    """The first future to finish (TimeoutError if none does in time)."""
    items = list(futures)
    if not items:
        raise ValueError("select() needs at least one future")
    done, _ = wait(items, timeout=timeout, return_when=FIRST_COMPLETED)
    if not done:
        raise TimeoutError(f"none of {len(items)} futures finished within {timeout} s")
    return done[0]


def as_completed(futures: Iterable[ObjectFuture], timeout: float | None = None) -> Iterator[ObjectFuture]:
    """Yield futures as they finish."""
    from concurrent.futures import as_completed as _as_completed

    items = list(futures)
    by_inner = {id(_flamepy.inner_future(f)): f for f in items}
    for inner in _as_completed([_flamepy.inner_future(f) for f in items], timeout=timeout):
        yield by_inner[id(inner)]
