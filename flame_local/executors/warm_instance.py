"""A pre-started interpreter that becomes an instance process on request (see :mod:`flame_local.executors.warm`).

It imports what ``python -m flamepy.runner.runpy`` needs (flamepy's package ``__init__`` runs on
first use of a package-level name: ``flame_jupyter._lean_flamepy``), then waits for one JSON line on
stdin: ``{"module", "args", "cwd", "env", "stdout", "stderr", "framed"}``.  It then takes that environment,
working directory, ``sys.path`` and log files, and runs the module as ``__main__``, exactly as
``python -m <module> <args>`` would have; with ``framed``, flamepy's instance server speaks
:mod:`flame_local.executors.framed_shim` instead of gRPC.  End of input means "not needed": it exits.
"""

from __future__ import annotations

import json
import os
import sys


def _preload() -> None:
    try:  # flamepy's client and runpy without its instance server (FastAPI) and pandas until used
        from flame_jupyter._lean_flamepy import lean_import
    except ImportError:  # flame_local installed without flame_jupyter: plain imports
        pass
    else:
        lean_import()
    import flamepy.core.service  # noqa: F401
    import flamepy.runner.runpy  # noqa: F401


def _redirect(fd: int, path: str) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, fd)
    os.close(target)


def main() -> None:
    _preload()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return
    req = json.loads(line)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _redirect(1, req["stdout"])
    _redirect(2, req["stderr"])
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    # `python -m` puts the working directory first, then PYTHONPATH, then the rest.
    sys.path[:1] = [os.getcwd(), *extra]
    sys.argv = [req["module"], *req["args"]]
    if req.get("framed"):
        from flame_local.executors import framed_shim

        framed_shim.install()
    import runpy

    runpy.run_module(req["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
