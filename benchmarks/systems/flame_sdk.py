"""flame-jupyter's SDK (``flame_jupyter.Runner``) on the embedded runtime.

The same runtime and stock runpy executors as ``flame``; on top: notebook code captured with
dill, fresh globals sent by content digest (a large global is uploaded once), large arguments
offloaded to the object cache once, and live futures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from systems.base import package_versions
from systems.flame import RunnerSystem


class FlameSdk(RunnerSystem):
    """``flame_jupyter.Runner`` with the embedded runtime it starts (``max_instances`` = workers)."""

    name = "flame-sdk"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
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
            self.end("stop")
        finally:
            import flame_jupyter as fj

            fj.disconnect()
            shutil.rmtree(self._home, ignore_errors=True)

    def new_runner(self, name: str) -> Any:
        import flame_jupyter as fj

        return fj.Runner(f"bench-sdk-{name}")

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        import flame_jupyter as fj

        return fj.get(list(handles))

    def put(self, value: Any) -> Any:
        return value  # the SDK offloads large arguments to the cache itself (once per content)

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
