"""ipyparallel: a local ``ipp.Cluster`` of two engines, controller on 127.0.0.1.

Tasks go through a load-balanced view.  Serialization is switched to cloudpickle
(``rc[:].use_cloudpickle()``, ipyparallel's documented switch for interactively defined code):
with the default, functions are sent as code whose globals resolve in the engine's namespace,
so a closure over a notebook global, a notebook dataclass or class instance, and W7 all fail.
An actor is an instance pushed into one engine's namespace and called through ``ipp.Reference``.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from systems.base import Actor, System, package_versions

_ids = itertools.count()


def _call_ref(obj: Any, method: str, *args: Any) -> Any:
    return getattr(obj, method)(*args)


class _EngineActor(Actor):
    def __init__(self, view: Any, instance: Any) -> None:
        import ipyparallel as ipp

        self._view = view
        self._name = f"_bench_actor_{next(_ids)}"
        view.push({self._name: instance}, block=True)
        self._ref = ipp.Reference(self._name)

    def submit(self, method: str, *args: Any) -> Any:
        return self._view.apply_async(_call_ref, self._ref, method, *args)

    def close(self) -> None:
        self._view.execute(f"del {self._name}", block=True)


class IPyParallel(System):
    name = "ipyparallel"

    def __init__(self, workers: int = 2, serializer: str = "cloudpickle") -> None:
        super().__init__(workers)
        self.serializer = serializer  # "cloudpickle" or "default"
        self._cluster: Any = None
        self._rc: Any = None
        self._view: Any = None
        self._actors: list[_EngineActor] = []
        self._ipython_dir = ""

    def start(self) -> None:
        self._ipython_dir = tempfile.mkdtemp(prefix="bench-ipython-")
        os.environ["IPYTHONDIR"] = self._ipython_dir  # no user profile; cluster files go here
        import ipyparallel as ipp

        self._cluster = ipp.Cluster(n=self.workers, controller_ip="127.0.0.1", log_level=logging.WARNING)
        self._rc = self._cluster.start_and_connect_sync()
        self._rc.wait_for_engines(self.workers, timeout=120)
        if self.serializer == "cloudpickle":
            self._rc[:].use_cloudpickle()
        self._view = self._rc.load_balanced_view()

    def stop(self) -> None:
        try:
            if self._rc is not None:
                self._rc.close()
            if self._cluster is not None:
                self._cluster.stop_cluster_sync()
        finally:
            self._cluster = self._rc = self._view = None
            if self._ipython_dir:
                shutil.rmtree(self._ipython_dir, ignore_errors=True)

    def end(self, workload: str) -> None:
        for a in self._actors:
            try:
                a.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._actors = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._view.apply_async(fn, *args)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        return [h.get() for h in handles]

    def actor(self, instance: Any) -> Actor:
        a = _EngineActor(self._rc[self._rc.ids[0]], instance)
        self._actors.append(a)
        return a

    def versions(self) -> dict[str, str]:
        return package_versions("ipyparallel", "pyzmq", "cloudpickle", "numpy")

    def notes(self) -> list[str]:
        return [
            f"ipp.Cluster(n={self.workers}, controller_ip='127.0.0.1'); load-balanced view; serialization: "
            + (
                "cloudpickle (rc[:].use_cloudpickle())"
                if self.serializer == "cloudpickle"
                else "default canning"
            ),
            "actor = instance pushed to one engine, called via ipp.Reference",
        ]
