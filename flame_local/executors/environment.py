"""An instance's environment: variables, its own TMPDIR, and its application's installed package.

Each package is installed once per application registration (name and generation) and shared by
that application's instances; installs and temp dirs of unregistered applications are removed.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flame_local import packages
from flame_local.executors.instances import expand
from flame_local.settings import RuntimeSettings
from flame_local.state import Application

__all__ = ["NO_WARM", "Environments", "InstallFailed", "safe_name"]

NO_WARM = "\x00no-warm"  # internal marker in the env dict, never passed to a process


class InstallFailed(Exception):
    """The application's package could not be installed (Flame's bind return code 10)."""


@dataclass
class _Install:
    lock: threading.Lock = field(default_factory=threading.Lock)
    env: dict[str, str] | None = None
    error: str | None = None
    installed_deps: bool = False  # dependencies were installed: they could shadow preloaded modules


class Environments:
    """Builds instance environments for one runtime; thread-safe."""

    def __init__(
        self,
        settings: RuntimeSettings,
        home: Path,
        python: str,
        endpoint: str,
        cache_endpoint: str,
        read_cache_object: Callable[[str], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.home = home
        self.python = python
        self.endpoint = endpoint
        self.cache_endpoint = cache_endpoint
        self.read_cache_object = read_cache_object
        self._lock = threading.Lock()
        self._installs: dict[tuple[str, int], _Install] = {}
        self._app_tmp: set[str] = set()  # applications with a work/<app>/tmp dir

    def for_instance(self, executor_id: str, app: Application) -> dict[str, str]:
        """The environment of a new instance of ``app`` (without its package)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_INSTANCE")}
        env.update(self.settings.extra_env)
        for name, value in app.environments.items():
            env[name] = _expand_all_or_nothing(value, env)
        level = self.settings.instance_log_level
        env.update(
            FLAME_LOG=level,
            RUST_LOG=level,
            FLAME_ENDPOINT=self.endpoint,
            FLAME_CACHE_ENDPOINT=self.cache_endpoint,
            FLAME_HOME=str(self.home),
            FLAME_EXECUTOR_ID=executor_id,
        )
        env.pop("FLAME_CACHE_STORAGE", None)  # instances always talk to this runtime's cache
        tmp = self.home / "work" / safe_name(app.name) / "tmp"
        with self._lock:
            self._app_tmp.add(app.name)
        tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))
        pydir = str(Path(self.python).parent)
        env["PATH"] = pydir + os.pathsep + env.get("PATH", os.defpath)
        return env

    def with_package(self, app: Application, env: dict[str, str]) -> dict[str, str]:
        """``env`` with ``app``'s package installed and on its paths (InstallFailed if it cannot be).

        When the install added dependencies, the result holds :data:`NO_WARM` (pop it before use)."""
        key = (app.name, app.generation)
        with self._lock:
            install = self._installs.setdefault(key, _Install())
        with install.lock:
            if install.env is None and install.error is None:
                workdir = self.home / "apps" / f"{safe_name(app.name)}-{app.generation}"
                url = expand(app.spec.url, env)
                try:
                    prepared = packages.prepare(
                        url,
                        workdir,
                        read_cache_object=self.read_cache_object,
                        python=self.python,
                        log_path=self.home / "logs" / "install" / f"{safe_name(app.name)}.log",
                    )
                except packages.PackageError as e:
                    install.error = str(e)
                else:
                    install.env = dict(prepared.env)
                    install.installed_deps = bool(prepared.install.installed)
            if install.error is not None:
                raise InstallFailed(install.error)
            assert install.env is not None
            env = dict(env)
            if install.installed_deps:
                env[NO_WARM] = "1"
            for name, value in install.env.items():
                if name in ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH") and env.get(name):
                    env[name] = value + os.pathsep + env[name]
                else:
                    env.setdefault(name, value)
            return env

    def forget_stale(self, current: set[tuple[str, int]], in_use: set[str]) -> None:
        """Remove installed packages of applications that were unregistered or re-registered
        (``current``: the registered (name, generation) pairs; ``in_use``: apps with instances)."""
        with self._lock:
            stale = [k for k in self._installs if k not in current and k[0] not in in_use]
            for k in stale:
                del self._installs[k]
        names = {name for name, _ in current}
        for name, generation in stale:
            shutil.rmtree(self.home / "apps" / f"{safe_name(name)}-{generation}", ignore_errors=True)
            if name not in names:
                (self.home / "logs" / "install" / f"{safe_name(name)}.log").unlink(missing_ok=True)
        with self._lock:
            gone = [n for n in self._app_tmp if n not in names and n not in in_use]
            self._app_tmp.difference_update(gone)
        for name in gone:  # the TMPDIR of an unregistered application's instances
            shutil.rmtree(self.home / "work" / safe_name(name), ignore_errors=True)


def safe_name(name: str) -> str:
    """``name`` as one path component."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "_"


def _expand_all_or_nothing(value: str, env: dict[str, str]) -> str:
    """Flame expands an app environment value only when every variable in it is known."""
    names = re.findall(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", value)
    if all((a or b) in env for a, b in names):
        return expand(value, env)
    return value
