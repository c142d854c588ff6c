"""Shared fixtures: one embedded runtime per test session, and flamepy pointed at it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def point_flamepy_at(endpoint: str, cache_endpoint: str) -> None:
    """Point this process's flamepy at a runtime (env vars + a fresh connection)."""
    from flamepy.core.client import ConnectionInstance

    os.environ["FLAME_ENDPOINT"] = endpoint
    os.environ["FLAME_CACHE_ENDPOINT"] = cache_endpoint
    with ConnectionInstance._lock:
        ConnectionInstance._connection = None
        ConnectionInstance._context = None


@pytest.fixture(scope="session")
def flame_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME without a user flame.yaml, for this process and the scripts it starts."""
    home = tmp_path_factory.mktemp("home")
    os.environ["HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def runtime(flame_home: Path) -> Iterator:
    from flame_local import LocalRuntime

    rt = LocalRuntime(max_instances=4, shutdown_grace=2.0).start()
    point_flamepy_at(rt.endpoint, rt.cache_endpoint)
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def script_env(runtime, flame_home: Path) -> dict[str, str]:
    """Environment for a plain script run against the session runtime."""
    env = dict(os.environ, HOME=str(flame_home), **runtime.client_env())
    env.pop("FLAME_CACHE_STORAGE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


PYTHON = sys.executable
