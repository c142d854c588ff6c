"""flame-jupyter's SDK (``flame_jupyter.Runner``) on the embedded runtime.

The same runtime and stock runpy executors as ``flame``; on top: notebook code captured with
dill, fresh globals sent by content digest (a large global is uploaded once), large arguments
offloaded to the object cache once, and live futures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from systems.base import Actor, System, package_versions


class _SdkActor(Actor):
    def __init__(self, service: Any) -> None:
        self._service = service

    def submit(self, method: str, *args: Any) -> Any:
        return getattr(self._service, method)(*args)


class FlameSdk(System):
    """``flame_jupyter.Runner`` with the embedded runtime it starts (``max_instances`` = workers)."""

    name = "flame-sdk"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._runner: Any = None
        self._services: dict[int, Any] = {}
        self._home = ""

    def start(self) -> None:
        for key in [k for k in os.environ if k.startswith("FLAME_")]:
            del os.environ[key]
        self._home = tempfile.mkdtemp(prefix="bench-flame-sdk-home-")
        os.environ["HOME"] = self._home
        import flame_jupyter as fj

        fj.connect(embedded=True, max_instances=self.workers)

    def stop(self) -> None:
        try:
            if self._runner is not None:
                self._runner.close()
                self._runner = None
        finally:
            import flame_jupyter as fj

            fj.disconnect()
            shutil.rmtree(self._home, ignore_errors=True)

    def begin(self, workload: str) -> None:
        import flame_jupyter as fj

        self._services = {}
        self._runner = fj.Runner(f"bench-sdk-{workload.lower()}")

    def end(self, workload: str) -> None:
        runner, self._runner, self._services = self._runner, None, {}
        if runner is not None:
            runner.close()

    def _service(self, fn: Callable[..., Any]) -> Any:
        if self._runner is None:
            self.begin("adhoc")
        svc = self._services.get(id(fn))
        if svc is None:
            svc = self._services[id(fn)] = self._runner.service(fn)
        return svc

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._service(fn)(*args)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        import flame_jupyter as fj

        return fj.get(list(handles))

    def put(self, value: Any) -> Any:
        return value  # the SDK offloads large arguments to the cache itself (once per content)

    def actor(self, instance: Any) -> Actor:
        if self._runner is None:
            self.begin("adhoc")
        return _SdkActor(self._runner.service(instance))

    def versions(self) -> dict[str, str]:
        return package_versions(
            "flame-jupyter", "flamepy", "dill", "cloudpickle", "grpcio", "pyarrow", "numpy"
        )

    def notes(self) -> list[str]:
        return [
            f"flame_jupyter.Runner, embedded runtime as a child process, max_instances={self.workers}",
            "one service per function per workload; every call sends the function's current globals "
            "(by content digest: an unchanged large global is not uploaded again)",
            "arguments above 1 MiB go to the object cache once (content digest) and travel as ObjectRefs",
        ]
