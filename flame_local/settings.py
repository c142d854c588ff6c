"""Settings of one embedded runtime (all have defaults; the CLI and the Python API set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def parse_size(text: str | int) -> int:
    """``"200M"``, ``"4G"``, ``"512KiB"`` or a byte count -> bytes."""
    if isinstance(text, int):
        return text
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 200M or 4G)") from None
    if value < 0:
        raise ValueError(f"not a size: {text!r}")
    return value


def _default_cache_budget() -> int:
    """FLAME_LOCAL_CACHE_BUDGET, else a quarter of the machine's memory, at most 4 GiB."""
    env = os.environ.get("FLAME_LOCAL_CACHE_BUDGET")
    if env:
        return parse_size(env)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        ram = 16 << 30
    return min(ram // 4, 4 << 30)


def _env_size(name: str, default: int) -> int:
    env = os.environ.get(name)
    return parse_size(env) if env else default


def _env_int(name: str) -> int | None:
    env = os.environ.get(name)
    return int(env) if env else None


def _default_max_instances() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class RuntimeSettings:
    """How a :class:`~flame_local.runtime.LocalRuntime` runs.

    Example
    -------
    >>> RuntimeSettings(max_instances=4).host
    '127.0.0.1'
    """

    host: str = "127.0.0.1"
    port: int = 0  # frontend gRPC port; 0 = a free port
    cache_port: int = 0  # Arrow Flight object cache port; 0 = a free port
    home: Path | None = None  # FLAME_HOME of the runtime (logs, packages, work dirs); None = temp dir
    max_instances: int = field(default_factory=_default_max_instances)  # slots: instances running tasks
    # instance processes in all: lent slots (tasks waiting on tasks) and idle min_instances
    # instances beyond the slots; None = 4 x max_instances (see docs/runtime.md, "Slots")
    max_processes: int | None = field(default_factory=lambda: _env_int("FLAME_LOCAL_MAX_PROCESSES"))
    warm_instances: int = 1  # pre-started interpreters that already imported flamepy (0 = off)
    bind_timeout: float = 60.0  # seconds for an instance to start listening and enter its session
    bind_retry_limit: int = 5  # Flame's recovery.session.retry_limits
    instance_log_level: str = "warning"  # FLAME_LOG given to instances (Flame passes RUST_LOG or info)
    max_closed_sessions: int = 1000  # closed sessions kept for GetSession/ListSession
    grpc_workers: int = (
        256  # threads for unary calls; streams (WatchTask) run on the event loop, holding none
    )
    # Not Flame (off = as Flame); each avoids a client waiting forever, see docs/runtime.md.
    fail_unbindable_tasks: bool = (
        False  # after the bind retry limit, fail the session's tasks (Flame: pending)
    )
    watch_errors: bool = (
        False  # WatchTask of an unknown/vanished task: NOT_FOUND (Flame: the stream just ends)
    )
    shutdown_grace: float = 10.0  # seconds running tasks get to finish on stop()
    # object cache: bytes kept in memory (LRU objects beyond it spill to <home>/cache), bytes of
    # spill files, and the largest single object (see docs/runtime.md, "Object cache budget")
    cache_budget: int = field(default_factory=_default_cache_budget)
    cache_disk_budget: int = field(
        default_factory=lambda: _env_size("FLAME_LOCAL_CACHE_DISK_BUDGET", 16 << 30)
    )
    cache_max_object: int = field(
        default_factory=lambda: _env_size("FLAME_LOCAL_CACHE_MAX_OBJECT", 512 << 20)
    )
    handshake_timeout: float = 10.0  # seconds a new TCP connection gets to speak HTTP/2 (Frontend)
    connection_idle_timeout: float = 600.0  # seconds a connection without calls is kept (Frontend)
    keepalive_interval: float = 60.0  # seconds between server pings of an idle connection (Frontend)
    allow_other_users: bool = False  # refuse connections from other local users (uid check)
    python: str | None = None  # interpreter for `python`/`python3` in instance commands; None = this one
    extra_env: dict[str, str] = field(default_factory=dict)  # added to every instance's environment

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(
                f"flame-local listens on loopback only; host {self.host!r} is not allowed "
                "(use a Flame cluster to serve other machines)"
            )
        if self.max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        if self.max_processes is not None and self.max_processes < self.max_instances:
            raise ValueError("max_processes must be at least max_instances")
        if self.home is not None:
            self.home = Path(self.home)
        for name in ("cache_budget", "cache_disk_budget", "cache_max_object"):
            setattr(self, name, parse_size(getattr(self, name)))

    @property
    def process_limit(self) -> int:
        """At most this many instance processes at once (``max_processes``, else 4 x max_instances)."""
        return self.max_processes if self.max_processes is not None else 4 * self.max_instances

    def grpc_server_options(self) -> list[tuple[str, int]]:
        """Frontend server options: connections that never handshake, sit idle or stop answering
        pings are closed, so nobody can hold the runtime's file descriptors for good."""
        return [
            ("grpc.server_handshake_timeout_ms", int(self.handshake_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(self.connection_idle_timeout * 1000)),
            ("grpc.keepalive_time_ms", int(self.keepalive_interval * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
