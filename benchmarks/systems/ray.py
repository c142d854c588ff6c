"""Ray, a local instance started by ``ray.init`` (2 CPUs, no dashboard, loopback).

Each function is wrapped with ``ray.remote`` once (as ``@ray.remote`` would), so it is exported
with its globals on first use.  An actor is a generic holder actor constructed with the notebook
instance.  ``put`` is ``ray.put`` (shared-memory object store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from systems.base import Actor, System, package_versions


class _Holder:
    """Ray actor body: holds a notebook instance and forwards method calls to it."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.instance, method)(*args)


class _RayActor(Actor):
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def submit(self, method: str, *args: Any) -> Any:
        return self._handle.call.remote(method, *args)

    def close(self) -> None:
        import ray

        ray.kill(self._handle)


class Ray(System):
    name = "ray"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._remote: dict[int, Any] = {}
        self._actors: list[_RayActor] = []

    def start(self) -> None:
        import ray

        ray.init(
            num_cpus=self.workers,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )

    def stop(self) -> None:
        import ray

        self._actors = []
        ray.shutdown()

    def end(self, workload: str) -> None:
        for a in self._actors:
            try:
                a.close()
            except Exception:  # noqa: BLE001 - the actor may already be gone
                pass
        self._actors = []
        self._remote = {}

    def _fn(self, fn: Callable[..., Any]) -> Any:
        import ray

        r = self._remote.get(id(fn))
        if r is None:
            r = self._remote[id(fn)] = ray.remote(fn)
        return r

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._fn(fn).remote(*args)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        import ray

        return ray.get(list(handles))

    def put(self, value: Any) -> Any:
        import ray

        return ray.put(value)

    def actor(self, instance: Any) -> Actor:
        import ray

        a = _RayActor(ray.remote(_Holder).remote(instance))
        self._actors.append(a)
        return a

    def versions(self) -> dict[str, str]:
        return package_versions("ray", "numpy")

    def notes(self) -> list[str]:
        return [
            f"ray.init(num_cpus={self.workers}, include_dashboard=False, _node_ip_address='127.0.0.1')",
            "ray.remote(fn) once per function; ray.get results (numpy results are zero-copy views)",
        ]
