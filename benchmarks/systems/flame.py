"""flame-jupyter's embedded runtime, driven through the unmodified flamepy 0.6.0 ``Runner`` API.

``flame`` runs the runtime as a separate process (``RuntimeProcess``, as the notebook extension
does); ``flame-inproc`` runs ``LocalRuntime`` inside the benchmark process (one process to
profile).  Each workload gets its own ``Runner`` (one Flame application); each function gets one
service (session) per workload, created on first use, so the function and its globals are
pickled once per workload.  Large values go through ``Runner.put_object`` (the Arrow Flight cache).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from systems.base import Actor, System, package_versions


class _ServiceActor(Actor):
    def __init__(self, service: Any) -> None:
        self._service = service

    def submit(self, method: str, *args: Any) -> Any:
        return getattr(self._service, method)(*args)


class RunnerSystem(System):
    """What both flame adapters share: one runner per workload, one service per function
    (created on first use), an actor is a service of the instance. Subclasses say how the runtime
    starts and stops and which ``Runner`` to use (:meth:`new_runner`)."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._runner: Any = None
        self._services: dict[int, Any] = {}

    def new_runner(self, name: str) -> Any:
        raise NotImplementedError

    def begin(self, workload: str) -> None:
        self._services = {}
        self._runner = self.new_runner(workload.lower())

    def end(self, workload: str) -> None:
        runner, self._runner, self._services = self._runner, None, {}
        if runner is not None:
            runner.close()

    def _current_runner(self) -> Any:
        if self._runner is None:
            self.begin("adhoc")
        return self._runner

    def _service(self, fn: Callable[..., Any]) -> Any:
        svc = self._services.get(id(fn))
        if svc is None:
            svc = self._services[id(fn)] = self._current_runner().service(fn)
        return svc

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._service(fn)(*args)

    def actor(self, instance: Any) -> Actor:
        return _ServiceActor(self._current_runner().service(instance))


class FlameRunner(RunnerSystem):
    """flamepy ``Runner`` against the embedded runtime (``max_instances`` = workers)."""

    name = "flame"
    in_process = False

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self._runtime: Any = None
        self._dirs: list[str] = []
        self._old_cwd = os.getcwd()

    def start(self) -> None:
        # flamepy reads ~/.flame/flame.yaml and FLAME_* variables: give it a clean HOME and only ours.
        for key in [k for k in os.environ if k.startswith("FLAME_")]:
            del os.environ[key]
        home = tempfile.mkdtemp(prefix="bench-flame-home-")
        work = tempfile.mkdtemp(prefix="bench-flame-cwd-")  # Runner packages the cwd: keep it empty
        self._dirs += [home, work]
        os.environ["HOME"] = home
        if self.in_process:
            from flame_local import LocalRuntime

            self._runtime = LocalRuntime(max_instances=self.workers, shutdown_grace=2.0).start()
        else:
            from flame_local.process import RuntimeProcess

            self._runtime = RuntimeProcess.start(max_instances=self.workers)
        os.environ.update(self._runtime.client_env())
        os.chdir(work)

    def stop(self) -> None:
        try:
            self.end("stop")
        finally:
            try:
                if self._runtime is not None:
                    self._runtime.stop()
                    self._runtime = None
            finally:
                os.chdir(self._old_cwd)
                for d in self._dirs:
                    shutil.rmtree(d, ignore_errors=True)

    def new_runner(self, name: str) -> Any:
        from flamepy.runner import Runner

        return Runner(f"bench-{name}")

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        return [h.get() for h in handles]  # what Runner.get does

    def put(self, value: Any) -> Any:
        return self._current_runner().put_object(value)

    def capture_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Placeholder until flame_jupyter's capture: a fresh service per call, as a re-run cell
        would need with flamepy, so the function and its globals are pickled and uploaded each time."""
        runner = self._current_runner()
        svc = runner.service(fn)
        try:
            return svc(*args).get()
        finally:
            svc.close()
            if svc in runner._services:  # flamepy keeps it for Runner.close(); closed already
                runner._services.remove(svc)

    def versions(self) -> dict[str, str]:
        return package_versions("flamepy", "flame-jupyter", "cloudpickle", "grpcio", "pyarrow", "numpy")

    def notes(self) -> list[str]:
        where = (
            "in the benchmark process (LocalRuntime)"
            if self.in_process
            else "as a child process (RuntimeProcess)"
        )
        return [
            f"embedded runtime {where}, max_instances={self.workers}",
            "flamepy 0.6.0 Runner: one Runner per workload, one service (session) per function; "
            "function services autoscale (0..2 instances), an instance is a fixed 1-instance service",
            "plain arguments travel inside the CreateTask gRPC message; put() = Runner.put_object (Flight cache)",
        ]


class FlameInProcess(FlameRunner):
    """Same as :class:`FlameRunner` with the runtime inside the benchmark process."""

    name = "flame-inproc"
    in_process = True
