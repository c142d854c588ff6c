"""``concurrent.futures.ProcessPoolExecutor``: the floor (no runtime, no object store).

The platform's default start method is used (``fork`` on Linux with Python < 3.14), so workers
see ``__main__`` as it was when they were forked.  An actor is a one-worker pool whose
initializer holds the instance.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from systems.base import Actor, System, package_versions

_instance: Any = None  # the actor's instance, in its worker


def _init_actor(instance: Any) -> None:
    global _instance
    _instance = instance


def _call_actor(method: str, *args: Any) -> Any:
    return getattr(_instance, method)(*args)


def _noop() -> None:
    return None


class _PoolActor(Actor):
    def __init__(self, instance: Any) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, initializer=_init_actor, initargs=(instance,))

    def submit(self, method: str, *args: Any) -> Any:
        return self._pool.submit(_call_actor, method, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ProcessPool(System):
    name = "processpool"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._actors: list[_PoolActor] = []

    def start(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=self.workers)
        # Workers start lazily; make both exist so "start" means the same as for the others.
        for f in [self._pool.submit(_noop) for _ in range(self.workers)]:
            f.result()

    def stop(self) -> None:
        for a in self._actors:
            a.close()
        self._actors = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def end(self, workload: str) -> None:
        for a in self._actors:
            a.close()
        self._actors = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        assert self._pool is not None
        return self._pool.submit(fn, *args)

    def gather(self, handles: Sequence[Future[Any]]) -> list[Any]:
        return [h.result() for h in handles]

    def actor(self, instance: Any) -> Actor:
        a = _PoolActor(instance)
        self._actors.append(a)
        return a

    def versions(self) -> dict[str, str]:
        return package_versions("numpy")

    def notes(self) -> list[str]:
        return [
            f"ProcessPoolExecutor(max_workers={self.workers}), start method "
            f"{multiprocessing.get_start_method()!r}; pickle (functions by reference to __main__)",
            "actor = a one-worker pool holding the instance",
            "forked workers see __main__ as it was when they started: a later rebinding (W6) or a global "
            "set afterwards (W7) is not seen",
        ]
