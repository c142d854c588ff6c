"""The one module that touches flamepy's internals (private attributes of its Runner, services,
futures and connection), so a flamepy upgrade has one place to look.

flamepy 0.6.0 is the reference client: flame_jupyter uses its Runner for packaging and
registration, its services for sessions and tasks, and its futures as the base of
:class:`~flame_jupyter.futures.ObjectFuture`. What it does not make public is reached here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

_cwd_lock = threading.Lock()


@contextlib.contextmanager
def _empty_cwd() -> Iterator[None]:
    """flamepy's Runner packages the working directory; notebook code travels captured instead,
    so give it an empty one (a notebook's directory may hold gigabytes of data). flamepy reads
    the process's working directory, so it is changed for the moment of the call (under a lock)."""
    with _cwd_lock:
        old = os.getcwd()
        tmp = tempfile.mkdtemp(prefix="flame-jupyter-pkg-")
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)
            shutil.rmtree(tmp, ignore_errors=True)


def new_runner(name: str, *, dependencies: list[str] | None, python_version: str | None) -> Any:
    """A ``flamepy.runner.Runner`` that packages nothing of the notebook's directory."""
    from flamepy.runner import Runner

    with _empty_cwd():
        return Runner(name, dependencies=dependencies, python_version=python_version)


def session_of(service: Any) -> Any:
    """The flamepy session behind a flamepy Runner service."""
    return service._session


def forget_service(runner: Any, service: Any) -> None:
    """flamepy's Runner keeps every service to close it again at the end: drop a closed one (a
    long notebook opens many; closing one twice fails once the runtime has forgotten it)."""
    with contextlib.suppress(AttributeError, ValueError):
        runner._services.remove(service)


def inner_future(future: Any) -> Any:
    """The ``concurrent.futures.Future`` inside a flamepy ``ObjectFuture``."""
    return future._future


def task_id_of(future: Any) -> str | None:
    """The Flame task id a flamepy ``ObjectFuture`` stands for, when flamepy recorded it."""
    return getattr(future._future, "_task_id", None)


def reset_connection() -> None:
    """Make flamepy read its configuration again: its frontend connection and the object-cache
    context it caches separately (else the next call goes to the old cache)."""
    from flamepy.core import cache
    from flamepy.core.client import ConnectionInstance

    with ConnectionInstance._lock:
        ConnectionInstance._connection = None
        ConnectionInstance._context = None
    with cache._context_cache_lock:
        cache._context_cache = None


def flight_client(endpoint: str) -> Any:
    """The one Arrow Flight client per cache endpoint: flamepy's pooled client, with flamepy's
    TLS settings (``~/.flame/flame.yaml`` or ``FLAME_CA_FILE``...)."""
    from flamepy.core import cache

    return cache._get_flight_client(endpoint, cache._get_cache_tls_config())


def decode_cache_data(data: bytes) -> Any:
    """Decode an object-cache value in one of flamepy's own formats (Arrow tables, arrays)."""
    from flamepy.core.cache import _deserialize_object_data

    return _deserialize_object_data(data)
