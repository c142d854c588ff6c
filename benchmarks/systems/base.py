"""The system adapter interface every benchmarked system implements.

An adapter runs inside the workload process (``workloads.py`` run as ``__main__``), so the
functions and classes it receives are ``__main__`` objects, as in a notebook.  A new system (for
example a ``flame_jupyter`` SDK adapter) subclasses :class:`System`, implements the abstract
methods and is listed in :data:`systems.REGISTRY`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any


class NotSupported(Exception):
    """The system has no way to run this workload (reported as n/a with the message)."""


class Actor(abc.ABC):
    """A remote stateful object: a notebook class instance served by one worker."""

    @abc.abstractmethod
    def submit(self, method: str, *args: Any) -> Any:
        """Call ``method(*args)`` on the remote instance; return the system's handle."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the remote instance."""


class System(abc.ABC):
    """One system under test, driven with two workers on loopback only.

    Lifecycle: ``start()``, then per workload ``begin(name)`` … ``end(name)``, then ``stop()``.
    ``submit`` returns an opaque handle; ``gather`` turns handles into values (in order).
    """

    name: str = "?"
    workers: int = 2

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    # -- lifecycle -----------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None:
        """Start the runtime/cluster; return once it can run a task."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Shut down everything ``start`` started. Must be safe after a failed start."""

    def begin(self, workload: str) -> None:  # noqa: B027 - optional hook
        """Called before a workload (e.g. open a per-workload session)."""

    def end(self, workload: str) -> None:  # noqa: B027 - optional hook
        """Called after a workload, also after a failure (close what ``begin`` opened)."""

    # -- tasks ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Submit ``fn(*args)``; return a handle without waiting."""

    @abc.abstractmethod
    def gather(self, handles: Sequence[Any]) -> list[Any]:
        """Wait for the handles and return their values, in order."""

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Submit one task and wait for its value."""
        return self.gather([self.submit(fn, *args)])[0]

    def put(self, value: Any) -> Any:
        """Store a large value once and return something ``submit`` accepts in its place."""
        raise NotSupported(f"{self.name} has no object store API")

    @abc.abstractmethod
    def actor(self, instance: Any) -> Actor:
        """Serve ``instance`` (a ``__main__`` class instance) as a stateful remote object."""

    def capture_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """W7: call a function that reads a large ``__main__`` global, the way a notebook cell would.

        The default is the system's ordinary per-call path; adapters whose notebook path differs
        (flame's capture in ``flame_jupyter``) override it.
        """
        return self.call(fn, *args)

    # -- description ---------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        """Package versions that matter for this system."""
        return {}

    def notes(self) -> list[str]:
        """How the system is driven (serializer, start method, …), shown in the report."""
        return []


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
