"""One instance process: launch the application's command, talk the Instance shim over a Unix socket.

This is Flame's host shim (``executor_manager/src/shims/host_shim.rs``): the command and its
arguments are shell-expanded against the instance environment, the process runs in its own
process group with stdout/stderr in log files, ``FLAME_INSTANCE_ENDPOINT`` names the socket the
service listens on, and ``flame.v1.Instance`` calls are made strictly one at a time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from flamepy.proto import shim_pb2, shim_pb2_grpc, types_pb2

from flame_local.executors import framed_shim
from flame_local.executors.orphans import end_family, family, orphan_guard, signal_family

if TYPE_CHECKING:
    from flame_local.executors.warm import WarmPool

_RUNPY_NOISE = "RuntimeWarning: 'flamepy.runner.runpy' found in sys.modules"
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ShimError(Exception):
    """The instance could not be started or reached (Flame's bind return code 11)."""


#: What a shim call raises when the instance died or hung (gRPC or framed transport).
SHIM_ERRORS = (grpc.RpcError, framed_shim.ShimTransportError)


def expand(text: str, env: dict[str, str]) -> str:
    """Expand ``$VAR`` / ``${VAR}`` from ``env``; unknown variables stay as written (shellexpand)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def resolve_argv(
    command: str, arguments: list[str], env: dict[str, str], flame_home: Path, python: str
) -> list[str]:
    """The argv to execute for an application's command.

    Flame's ``flmrun`` command is ``${FLAME_HOME}/bin/uv run --python python<ver> python -m
    flamepy.runner.runpy``: ``uv run`` only selects an interpreter, so the runtime runs the rest
    directly with its own interpreter (``python``) instead of shipping uv.  Flame's Rust
    ``flmexec-service``/``flmping-service`` map to :mod:`flame_local.executors.builtin_services`.  ``python``/``python3``
    as a command resolve through PATH, where the runtime's interpreter directory comes first.
    """
    cmd = expand(command, env)
    args = [expand(a, env) for a in arguments]
    for service in ("flmexec", "flmping"):
        if Path(cmd) == flame_home / "bin" / f"{service}-service":
            return [python, "-m", "flame_local.executors.builtin_services", service, *args]
    if Path(cmd) == flame_home / "bin" / "uv" and args[:1] == ["run"]:
        rest = args[1:]
        while rest and rest[0].startswith("--"):
            rest = rest[2:] if rest[0] in ("--python", "-p") else rest[1:]
        if rest and re.fullmatch(r"python[0-9.]*", rest[0]):
            return [python, *rest[1:]]
        return rest
    if re.fullmatch(r"python[0-9.]*", cmd) and cmd != "python2":
        return [python, *args]
    return [cmd, *args]


class InstanceProcess:
    """A service process and the connection to its ``flame.v1.Instance`` service: gRPC, or the
    same calls as frames (:mod:`flame_local.executors.framed_shim`) when flamepy serves it in a warm
    interpreter."""

    def __init__(
        self,
        executor_id: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        socket_path: Path,
        log_dir: Path,
    ):
        self.executor_id = executor_id
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.socket_path = socket_path
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._stub: shim_pb2_grpc.InstanceStub | None = None
        self._framed: framed_shim.FramedShimClient | None = None
        self.warm = False
        self.ended_by_runtime = False  # kill_group() ended it (the runtime is stopping)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.executor_id}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.executor_id}.err"

    def start(self, timeout: float, warm: WarmPool | None = None) -> None:
        """Launch the process (from a warm interpreter when ``warm`` can) and wait until its
        Instance service answers (ShimError if not)."""
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = dict(self.env, FLAME_INSTANCE_ENDPOINT=str(self.socket_path))
        if warm is not None:
            self.stdout_path.touch(mode=0o600)
            self.stderr_path.touch(mode=0o600)
            taken = warm.take(self.argv, env, self.cwd, self.stdout_path, self.stderr_path)
            if taken is not None:
                self.proc, self.warm = taken
        if self.proc is None:
            self._start_cold(env)
        self._connect(timeout)

    def _start_cold(self, env: dict[str, str]) -> None:
        argv, preexec = orphan_guard(self.argv)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            try:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=preexec,  # type: ignore[arg-type]
                )
            except OSError as e:
                raise ShimError(f"failed to start {self.argv[0]!r}: {e.strerror or e}") from None

    @property
    def framed_path(self) -> Path:
        return self.socket_path.with_name(self.socket_path.name + framed_shim.SUFFIX)

    def _connect(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.002
        while not self.socket_path.exists():
            if self.framed_path.exists():  # flamepy's server in a warm instance: frames, not gRPC
                try:
                    self._framed = framed_shim.FramedShimClient(str(self.framed_path))
                    return
                except framed_shim.ShimTransportError:
                    pass  # bound, not listening yet: try again below
            if self.proc.poll() is not None:
                raise ShimError(self._exit_text("before it listened on its socket"))
            if time.monotonic() > deadline:
                raise ShimError(f"instance did not listen on {self.socket_path} within {timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        self._channel = grpc.insecure_channel(f"unix://{self.socket_path}")
        try:
            grpc.channel_ready_future(self._channel).result(timeout=max(0.1, deadline - time.monotonic()))
        except grpc.FutureTimeoutError:
            raise ShimError(self._exit_text("before its Instance service answered")) from None
        self._stub = shim_pb2_grpc.InstanceStub(self._channel)

    def _exit_text(self, when: str) -> str:
        rc = self.proc.poll() if self.proc else None
        how = "is not answering" if rc is None else describe_exit(rc)
        tail = self.stderr_tail()
        return f"instance process {how} {when}" + (f"; stderr: {tail}" if tail else "")

    def stderr_tail(self, limit: int = 600) -> str:
        """The end of the instance's stderr, on one line, without the warning every
        ``python -m flamepy.runner.runpy`` prints (it would hide the real error)."""
        try:
            data = self.stderr_path.read_bytes()[-(limit + 1024) :]
        except OSError:
            return ""
        lines = [line for line in data.decode("utf-8", "replace").splitlines() if _RUNPY_NOISE not in line]
        return "\n".join(lines).strip()[-limit:].replace("\n", " | ")

    def enter(self, ctx: shim_pb2.SessionContext, timeout: float) -> types_pb2.Result:
        if self._framed is not None:
            return self._framed.enter(ctx, timeout)
        assert self._stub is not None
        return self._stub.OnSessionEnter(ctx, timeout=timeout)

    def invoke(self, ctx: shim_pb2.TaskContext) -> types_pb2.TaskResult:
        if self._framed is not None:
            return self._framed.invoke(ctx)
        assert self._stub is not None
        return self._stub.OnTaskInvoke(ctx)

    def leave(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        try:
            if self._framed is not None:
                self._framed.leave(timeout)
            elif self._stub is not None:
                self._stub.OnSessionLeave(types_pb2.EmptyRequest(), timeout=timeout)
        except SHIM_ERRORS:
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a dying process to exit (so its end can be described)."""
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def kill_group(self) -> None:
        """SIGKILL the process group and every descendant now (from another thread; the owner
        still reaps it)."""
        if self.proc is not None and self.proc.returncode is None:
            self.ended_by_runtime = True
            end_family(self.proc.pid)  # first: while the instance lives, it adopts their orphans
            _signal_group(self.proc.pid, signal.SIGKILL)

    def exit_description(self) -> str:
        rc = self.proc.poll() if self.proc else None
        return "is still running" if rc is None else describe_exit(rc)

    def stop(self, grace: float = 2.0) -> None:
        """Close the channel, SIGTERM the process group, SIGKILL it after ``grace``; remove the socket."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._framed is not None:
            self._framed.close()
        if self.proc is not None and self.proc.returncode is None:
            pid = self.proc.pid
            # The instance is a subreaper: what its tasks started in other sessions (setsid,
            # double fork) is below it now, and would be orphaned to init once it exits.
            below = family({pid})
            _signal_group(pid, signal.SIGTERM)
            signal_family(below, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not _exited_unreaped(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            # The leader is unreaped (a zombie at worst), so the group id cannot have been reused:
            # SIGKILL whatever is left of the group and of its family, then reap.
            end_family(pid, below)
            _signal_group(pid, signal.SIGKILL)
            self.proc.wait(10)
        for path in (self.socket_path, self.framed_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exited_unreaped(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it (so its pid/pgid stay reserved)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}"
    return f"exited with code {rc}"
