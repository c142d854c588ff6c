"""Dask distributed on a ``LocalCluster`` of two single-threaded worker processes (loopback).

Tasks are ``client.submit(fn, *args, pure=False)``; an actor is ``client.submit(Holder, instance,
actor=True)``; ``put`` is ``client.scatter``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from systems.base import Actor, System, package_versions


class _Holder:
    """Dask actor body: holds a notebook instance and forwards method calls to it."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.instance, method)(*args)


class _DaskActor(Actor):
    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def submit(self, method: str, *args: Any) -> Any:
        return self._proxy.call(method, *args)  # an ActorFuture


class Dask(System):
    name = "dask"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._cluster: Any = None
        self._client: Any = None
        self._actor_futures: list[Any] = []

    def start(self) -> None:
        import dask
        from distributed import Client, LocalCluster

        # 100 MB task arguments are the point of W4; don't warn about them.
        dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GB"})
        self._cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
        )
        self._client = Client(self._cluster)
        self._client.wait_for_workers(self.workers, timeout=120)

    def stop(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None

    def end(self, workload: str) -> None:
        for f in self._actor_futures:
            f.release()
        self._actor_futures = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        from distributed.actor import BaseActorFuture

        if handles and isinstance(handles[0], BaseActorFuture):
            return [h.result() for h in handles]
        return self._client.gather(list(handles))

    def put(self, value: Any) -> Any:
        return self._client.scatter(value, direct=True)

    def actor(self, instance: Any) -> Actor:
        fut = self._client.submit(_Holder, instance, actor=True, pure=False)
        self._actor_futures.append(fut)
        return _DaskActor(fut.result())

    def versions(self) -> dict[str, str]:
        return package_versions("dask", "distributed", "cloudpickle", "numpy")

    def notes(self) -> list[str]:
        return [
            f"LocalCluster(n_workers={self.workers}, threads_per_worker=1, processes=True, host='127.0.0.1', "
            "dashboard_address=None)",
            "client.submit(pure=False) / client.gather; actor=True holder; put() = client.scatter",
        ]
