"""The embedded runtime, in-process: Frontend gRPC + Arrow Flight cache + executor manager.

Example
-------
>>> from flame_local import LocalRuntime
>>> with LocalRuntime() as rt:                     # doctest: +SKIP
...     os.environ.update(rt.client_env())          # flamepy now talks to this runtime
...     from flamepy.runner import Runner
...     with Runner("demo") as r:
...         print(r.service(abs)(-3).get())
3
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from flame_local import shm_storage
from flame_local.cache.server import CacheServer
from flame_local.cache.storage import DiskStorage
from flame_local.cache.store import CacheStore
from flame_local.executors.manager import ExecutorManager
from flame_local.process import CACHE_STORAGE_DIR, raise_fd_limit, steady_malloc
from flame_local.servers.frontend import FrontendService
from flame_local.servers.serving import FrontendServer
from flame_local.settings import RuntimeSettings
from flame_local.socket_dirs import make_socket_dir
from flame_local.state import Store

log = logging.getLogger(__name__)


class LocalRuntime:
    """A single-machine Flame, started and stopped from Python.

    ``start()`` returns once both servers accept connections; ``stop()`` lets running tasks
    finish (bounded by ``settings.shutdown_grace``), ends every instance process and removes
    sockets and temporary directories.
    """

    def __init__(self, settings: RuntimeSettings | None = None, **overrides: Any) -> None:
        if settings is None:
            settings = RuntimeSettings(**overrides)
        elif overrides:
            raise TypeError("pass either settings or keyword overrides, not both")
        self.settings = settings
        self._temp_home = settings.home is None
        self.home: Path = (
            Path(tempfile.mkdtemp(prefix="flame-local-")) if settings.home is None else Path(settings.home)
        )
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("logs", "logs/sessions", "logs/install", "work", "apps", CACHE_STORAGE_DIR):
            # Private whatever the home's own mode: logs and packages can hold secrets.
            (self.home / sub).mkdir(exist_ok=True, mode=0o700)
            os.chmod(self.home / sub, 0o700)
        self._socket_dir: Path | None = None
        #: The object cache's storage folder (Flame's ``cache.storage``): on tmpfs when there is one
        self.cache_storage_dir: Path = self.home / CACHE_STORAGE_DIR
        self._server: FrontendServer | None = None
        self._cache: CacheServer | None = None
        self.cache_store = CacheStore(
            budget=settings.cache_budget,
            spill_dir=self.home / "cache",
            disk_budget=settings.cache_disk_budget,
            max_object=settings.cache_max_object,
        )
        self.store: Store | None = None
        self.manager: ExecutorManager | None = None
        self.endpoint = ""
        self.cache_endpoint = ""
        self._stop_lock = threading.Lock()
        self._started = False
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> LocalRuntime:
        if self._started:
            return self
        s = self.settings
        raise_fd_limit()
        steady_malloc()
        self.cache_storage_dir = shm_storage.storage_dir(self.home / CACHE_STORAGE_DIR)
        try:
            cache_check = frontend_check = None
            if not s.allow_other_users:
                from flame_local.servers.peers import same_user_peer

                addr: dict[str, tuple[str, int]] = {}
                cache_check = lambda peer: same_user_peer(peer, addr.get("cache"))  # noqa: E731
                frontend_check = lambda peer: same_user_peer(peer, addr.get("frontend"))  # noqa: E731
            self._cache = CacheServer(
                self.cache_store,
                host=s.host,
                port=s.cache_port,
                peer_check=cache_check,
                storage=DiskStorage(self.cache_storage_dir),
            )
            self._cache.start()
            self.cache_endpoint = self._cache.endpoint
            if cache_check is not None:
                addr["cache"] = (_loopback_ip(s.host), self._cache.port)

            self.store = Store(
                max_closed_sessions=s.max_closed_sessions,
                on_change=self._poke,
                fail_unbindable_tasks=s.fail_unbindable_tasks,
            )
            self._server = FrontendServer(
                FrontendService(
                    self.store,
                    list_executors=self._list_executors,
                    watch_errors=s.watch_errors,
                    on_watch=self._on_watch,
                ),
                f"{_grpc_host(s.host)}:{s.port}",
                workers=s.grpc_workers,
                peer_check=frontend_check,
                options=s.grpc_server_options(),
            )
            port = self._server.start()
            if frontend_check is not None:
                addr["frontend"] = (_loopback_ip(s.host), port)
            self.endpoint = f"http://{s.host}:{port}"
            self._socket_dir = make_socket_dir()
            self.manager = ExecutorManager(
                self.store,
                s,
                self.home,
                self._socket_dir,
                endpoint=self.endpoint,
                cache_endpoint=self.cache_endpoint,
                read_cache_object=self._read_own_cache_object,
            )
            self.manager.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        log.info(
            "flame-local runtime at %s (cache %s, home %s)", self.endpoint, self.cache_endpoint, self.home
        )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop everything this runtime started. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        grace = self.settings.shutdown_grace if grace is None else grace
        if self.manager is not None:
            self.manager.stop(grace)
        elif self.store is not None:
            self.store.shutdown()
        if self._server is not None:
            self._server.stop(grace=1.0)
        if self._cache is not None:
            self._cache.stop()
        self.cache_store.clear()  # and its spill files
        DiskStorage(self.cache_storage_dir).close()  # and files never read
        shm_storage.remove(self.cache_storage_dir)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._temp_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def cache_storage(self) -> str:
        """The object cache's storage folder (on this host only), as ``RuntimeProcess`` reports it."""
        return str(self.cache_storage_dir)

    def client_env(self) -> dict[str, str]:
        """Environment variables that point flamepy at this runtime."""
        return {"FLAME_ENDPOINT": self.endpoint, "FLAME_CACHE_ENDPOINT": self.cache_endpoint}

    @property
    def socket_dir(self) -> Path | None:
        """The directory of the instance sockets (``flk-*``, see :mod:`flame_local.socket_dirs`), once started."""
        return self._socket_dir

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def _list_executors(self) -> list[Any]:
        return self.manager.list_executors() if self.manager is not None else []

    def _on_watch(self, peer: str, session_id: str) -> Any:
        if self.manager is None:
            return lambda: None
        return self.manager.note_watch(peer, session_id)

    def _poke(self) -> None:
        if self.manager is not None:
            self.manager.poke()

    def _read_own_cache_object(self, key: str) -> bytes:
        return self.cache_store.read_bytes(key)


def _loopback_ip(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _grpc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
