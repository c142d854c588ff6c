"""The systems the harness knows: adapter class, interpreter, and what must be importable.

To add one: write ``systems/<name>.py`` with a :class:`systems.base.System` subclass and add a
:class:`SystemSpec` here (or, like ``flame-magics``, a script with ``workloads.py``'s command line).  ``planned`` entries
have no adapter yet and show as n/a with their reason when selected.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from systems.base import System


@dataclass(frozen=True)
class SystemSpec:
    name: str
    target: str  # "module:Class" under systems/
    env: str  # "flame" (project interpreter) or "peers" (benchmarks/.venv-peers)
    imports: tuple[str, ...]  # modules that must import in that interpreter
    planned: str = ""  # non-empty: no adapter yet, this is why
    script: str = "workloads.py"  # what run.py runs for it (same command line and JSON)

    def load(self, workers: int = 2) -> System:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(f"systems.{module}"), cls)(workers)


REGISTRY: dict[str, SystemSpec] = {
    s.name: s
    for s in [
        SystemSpec("flame", "flame:FlameRunner", "flame", ("flamepy", "flame_local", "numpy", "psutil")),
        SystemSpec(
            "flame-inproc", "flame:FlameInProcess", "flame", ("flamepy", "flame_local", "numpy", "psutil")
        ),
        SystemSpec("flame-sdk", "flame_sdk:FlameSdk", "flame", ("flame_jupyter", "numpy", "psutil")),
        SystemSpec(
            "flame-magics",
            "",
            "flame",
            ("flame_jupyter", "jupyter_client", "ipykernel", "numpy"),
            script="magics_workloads.py",
        ),
        SystemSpec("ray", "ray:Ray", "peers", ("ray", "numpy", "psutil")),
        SystemSpec("dask", "dask:Dask", "peers", ("distributed", "numpy", "psutil")),
        SystemSpec("ipyparallel", "ipyparallel:IPyParallel", "peers", ("ipyparallel", "numpy", "psutil")),
        SystemSpec("processpool", "processpool:ProcessPool", "flame", ("numpy", "psutil")),
    ]
}

DEFAULT_SYSTEMS = ["flame-sdk", "flame-magics", "flame", "ray", "dask", "ipyparallel", "processpool"]
SMOKE_SYSTEMS = ["flame-sdk", "flame-magics", "flame", "processpool"]
