"""One place that decides where flamepy points: a configured Flame cluster, or the embedded runtime.

The rule: an explicit ``connect(endpoint=...)`` wins; otherwise ``FLAME_ENDPOINT`` or a
``~/.flame/flame.yaml`` means a cluster; otherwise the embedded runtime (``flame_local``) is started
as a child process that dies with this one.

Example
-------
>>> import flame_jupyter
>>> conn = flame_jupyter.connect()        # doctest: +SKIP
>>> print(conn)                           # doctest: +SKIP
embedded Flame runtime at http://127.0.0.1:40123 (pid 4242)
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from flame_jupyter.errors import FlameConfigError, FlameConnectionError, explain

T = TypeVar("T")

Mode = Literal["cluster", "embedded"]


@dataclass
class Connection:
    """Where flamepy points now, and (for the embedded runtime) the process behind it."""

    mode: Mode
    endpoint: str
    cache_endpoint: str
    source: (
        str  # where the setting came from: "argument", "FLAME_ENDPOINT", "~/.flame/flame.yaml", "embedded"
    )
    runtime: Any = None  # flame_local.process.RuntimeProcess for the embedded runtime
    package_storage: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.mode == "embedded":
            pid = getattr(self.runtime, "pid", "?")
            return f"embedded Flame runtime at {self.endpoint} (pid {pid})"
        return f"Flame cluster at {self.endpoint} (from {self.source})"


_lock = threading.RLock()
_current: Connection | None = None
_saved_env: dict[str, str | None] = {}


def current() -> Connection | None:
    """The active connection, or None."""
    return _current


def flame_yaml() -> Path:
    return Path.home() / ".flame" / "flame.yaml"


def configured_cluster() -> tuple[str, str, str, str | None] | None:
    """(endpoint, cache endpoint, source, package storage) of a configured cluster, or None."""
    from flamepy.core.types import FlameContext, FlameError

    has_file = flame_yaml().exists()
    if not has_file and not os.environ.get("FLAME_ENDPOINT"):
        return None
    try:
        ctx = FlameContext()
    except FlameError as e:
        raise FlameConfigError(
            f"{flame_yaml()} is not usable: {e.message}. Fix it, or move it away to use the embedded runtime."
        ) from None
    except Exception as e:  # noqa: BLE001 - yaml errors, missing keys
        raise FlameConfigError(
            f"{flame_yaml()} cannot be read ({type(e).__name__}: {e}). It needs `current-context` and a `contexts` "
            "list whose entries have a `name` and a `cluster: {endpoint: http://host:port}`."
        ) from None
    endpoint = ctx._endpoint  # flamepy connects with the raw value (no default), so must we
    if not endpoint:
        raise FlameConfigError(
            f"{flame_yaml()} has no cluster endpoint for context in use; add `cluster: {{endpoint: http://host:8080}}` "
            "or set FLAME_ENDPOINT."
        )
    if "://" not in endpoint:
        raise FlameConfigError(f"Flame endpoint {endpoint!r} needs a scheme, e.g. http://{endpoint}")
    source = "FLAME_ENDPOINT" if os.environ.get("FLAME_ENDPOINT") else "~/.flame/flame.yaml"
    storage = ctx.package.storage if ctx.package else None
    return endpoint, ctx.cache.endpoint, source, storage


def connect(
    endpoint: str | None = None,
    cache_endpoint: str | None = None,
    *,
    embedded: bool | None = None,
    max_instances: int | None = None,
    timeout: float = 10.0,
) -> Connection:
    """Connect flamepy (and flame_jupyter) to a Flame cluster or the embedded runtime.

    Parameters
    ----------
    endpoint, cache_endpoint
        A cluster's frontend (``http://host:8080``) and object cache (``grpc://host:9090``).
        Without them the configuration decides (see module docs).
    embedded
        True forces the embedded runtime, False forbids it (an error if nothing is configured).
    max_instances
        Instance processes of the embedded runtime (default: cores).
    """
    with _lock:
        # Bad settings or an unreachable cluster raise before the current connection is touched.
        conn: Connection | None = None
        if endpoint is not None:
            check_endpoint(endpoint, timeout)
            cache = cache_endpoint or _default_cache_for(endpoint)
            conn = Connection("cluster", endpoint, cache, "argument")
        elif not embedded:
            found = configured_cluster()
            if found is not None:
                check_endpoint(found[0], timeout)
                conn = Connection(
                    "cluster", found[0], cache_endpoint or found[1], found[2], package_storage=found[3]
                )
            elif embedded is False:
                raise FlameConfigError(
                    "No Flame cluster is configured: set FLAME_ENDPOINT or write ~/.flame/flame.yaml "
                    "(or allow the embedded runtime)."
                )
        if _current is not None:
            disconnect()
        if conn is None:
            conn = _start_embedded(max_instances)
        _point_flamepy(conn)
        try:
            _check_reachable(conn, timeout)
        except BaseException:
            _restore_env()
            if conn.runtime is not None:
                conn.runtime.stop()
            raise
        _set_current(conn)
        return conn


def check_endpoint(endpoint: str, timeout: float = 10.0) -> None:
    """Raise unless ``endpoint`` is a URL whose host accepts TCP connections (a quick check that
    spares flamepy's 10 s channel wait, and leaves the current connection alone on a typo)."""
    from urllib.parse import urlparse

    if "://" not in endpoint:
        raise FlameConfigError(f"Flame endpoint {endpoint!r} needs a scheme, e.g. http://{endpoint}")
    try:
        url = urlparse(endpoint)
        host, port = url.hostname, url.port or 8080  # flamepy's default port, whatever the scheme
    except ValueError as e:
        raise FlameConfigError(f"Flame endpoint {endpoint!r} is not a valid URL: {e}") from None
    if not host:
        raise FlameConfigError(f"Flame endpoint {endpoint!r} has no host, e.g. http://flame:8080")
    proxied = any(os.environ.get(v) for v in ("grpc_proxy", "https_proxy", "http_proxy"))
    if proxied and host not in ("127.0.0.1", "localhost", "::1"):
        return  # gRPC may reach it through the proxy only: let flamepy try
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise FlameConnectionError(
            f"Cannot reach the Flame cluster at {endpoint}: {e.strerror or e}. Check that it runs and that "
            "the endpoint is right, or use `%flame start` for the embedded runtime."
        ) from None


def ensure_connected() -> Connection:
    """The current connection, connecting from configuration first if there is none."""
    with _lock:
        return _current if _current is not None else connect()


def health(conn: Connection | None = None) -> list[str]:
    """What is wrong or right with the embedded runtime this process started, one line each
    (nothing for a cluster: its health is the cluster's)."""
    conn = conn or current()
    rp = conn.runtime if conn is not None else None
    if rp is None:
        return []
    lines = [f"runtime process: pid {rp.pid} " + ("running" if rp.alive() else "NOT RUNNING: %flame start")]
    for what, path in (("runtime home", rp.home), ("instance sockets", rp.socket_dir)):
        if not path:
            continue
        if Path(path).is_dir():
            lines.append(f"{what}: {path} (ok)")
        elif what == "instance sockets":
            lines.append(
                f"instance sockets: {path} is missing (a temp cleaner?); the runtime recreates it "
                "when it starts the next instance, running instances keep serving"
            )
        else:
            lines.append(f"runtime home: {path} is missing (a temp cleaner?): %flame stop, then %flame start")
    return lines


def disconnect() -> None:
    """Forget the connection; stop the embedded runtime if this process started it."""
    global _current
    with _lock:
        conn, _current = _current, None
        if conn is None:
            return
        _restore_env()
        if conn.runtime is not None:
            conn.runtime.stop()


def _set_current(conn: Connection) -> None:
    global _current
    _current = conn


def _default_cache_for(endpoint: str) -> str:
    from urllib.parse import urlparse

    host = urlparse(endpoint).hostname or "127.0.0.1"
    return f"grpc://{host}:9090"


def _point_flamepy(conn: Connection) -> None:
    """Environment variables are the only way flamepy takes an endpoint without a flame.yaml."""
    for name, value in (("FLAME_ENDPOINT", conn.endpoint), ("FLAME_CACHE_ENDPOINT", conn.cache_endpoint)):
        _saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value
    _reset_flamepy_connection()


def _restore_env() -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_env.clear()
    _reset_flamepy_connection()


def _reset_flamepy_connection() -> None:
    from flame_jupyter._flamepy import reset_connection

    reset_connection()


def _check_reachable(conn: Connection, timeout: float) -> None:
    """Ask for the ``flmrun`` template through flamepy itself (so TLS settings apply)."""
    from flamepy.core import client
    from flamepy.core.types import FlameError

    del timeout  # flamepy waits up to 10 s for the channel
    where = "the embedded runtime" if conn.mode == "embedded" else f"the Flame cluster at {conn.endpoint}"
    try:
        app = client.get_application("flmrun")
    except FlameError as e:
        hint = "" if conn.mode == "embedded" else ", or use `%flame start` for the embedded runtime"
        raise FlameConnectionError(
            f"Cannot reach {where}: {e.message}. Check that it runs and that the endpoint is right{hint}."
        ) from None
    if app is None:
        raise FlameConnectionError(
            f"Connected to {where}, but it has no `flmrun` application. "
            + (explain("Failed to get flmrun application template") or "")
        )


# -- the embedded runtime ---------------------------------------------------------------------------
# Linux delivers the parent-death signal when the *thread* that started the child ends, so the
# runtime is started from one long-lived thread; it then lives exactly as long as this process.
_keeper_jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
_keeper: threading.Thread | None = None


def _in_keeper_thread(fn: Callable[[], T], meanwhile: Callable[[], object] | None = None) -> T:
    """Run ``fn`` in the keeper thread and return its result; ``meanwhile`` runs in this
    thread while it works."""
    global _keeper
    with _lock:
        if _keeper is None or not _keeper.is_alive():
            _keeper = threading.Thread(target=_keeper_loop, name="flame-jupyter-runtime-keeper", daemon=True)
            _keeper.start()
    reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
    _keeper_jobs.put((fn, reply))
    if meanwhile is not None:
        meanwhile()
    ok, value = reply.get()
    if not ok:
        raise value
    return value


def _keeper_loop() -> None:
    while True:
        fn, reply = _keeper_jobs.get()
        try:
            reply.put((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            reply.put((False, e))


def _start_embedded(max_instances: int | None) -> Connection:
    try:
        from flame_local.process import RuntimeProcess, RuntimeStartError
    except ImportError as e:  # pragma: no cover - flame_local ships with flame_jupyter
        raise FlameConnectionError(f"the embedded runtime is not installed: {e}") from None
    try:
        rp = _in_keeper_thread(
            lambda: RuntimeProcess.start(max_instances=max_instances, die_with_parent=True),
            meanwhile=_import_flamepy,  # ~0.7 s of imports, overlapped with the runtime's start
        )
    except RuntimeStartError as e:
        raise FlameConnectionError(f"The embedded Flame runtime did not start: {e}") from None
    return Connection("embedded", rp.endpoint, rp.cache_endpoint, "embedded", runtime=rp)


def _import_flamepy() -> None:
    try:
        import flamepy  # noqa: F401
    except Exception:  # noqa: BLE001 - reported where flamepy is used
        pass


@atexit.register
def _stop_at_exit() -> None:
    try:
        disconnect()
    except Exception:  # noqa: BLE001 - interpreter shutdown
        pass
