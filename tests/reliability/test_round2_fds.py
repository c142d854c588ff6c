"""Round 2, fault 4: another user holding 1,100 connections must not make the owner's call fail
with a misleading "serves only the user who started it"; handshake-less connections time out."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from flamepy.proto import frontend_pb2, frontend_pb2_grpc

from tests.conftest import PYTHON
from tests.reliability.relkit import RuntimeChild, fd_count, report
from tests.reliability.test_round2_peers import OTHER, _other_user_ready

HOLD = 1100

HOLDER = r"""
import json, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held, t0 = [], time.monotonic()
while len(held) < count and time.monotonic() - t0 < 60:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        break
    held.append(s)
print("HELD " + json.dumps(len(held)), flush=True)
sys.stdin.readline()
"""


@contextmanager
def _soft_nofile(limit: int) -> Iterator[None]:
    """Children started inside inherit a soft RLIMIT_NOFILE of ``limit`` (the usual default)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _list(target: str, channel: grpc.Channel | None = None) -> str:
    ch = channel or grpc.insecure_channel(target)
    try:
        stub = frontend_pb2_grpc.FrontendStub(ch)
        stub.ListSession(frontend_pb2.ListSessionRequest(), timeout=10)
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"
    finally:
        if channel is None:
            ch.close()


def _soft_limit_of(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no limit line")


@pytest.mark.skipif(not _other_user_ready(), reason="needs root, setpriv and useradd for a second user")
def test_another_user_holding_1100_connections_does_not_lock_the_owner_out() -> None:
    with _soft_nofile(1024):
        rt = RuntimeChild({"max_instances": 1, "warm_instances": 0}).start()
    try:
        target = rt.endpoint.split("://")[1]
        owner = grpc.insecure_channel(target)
        assert _list(target, owner) == "OK"
        holder = subprocess.Popen(
            ["setpriv", "--reuid", OTHER, "--regid", OTHER, "--clear-groups", PYTHON, "-c", HOLDER,
             target.rsplit(":", 1)[1], str(HOLD)],
            cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdin is not None
            line = holder.stdout.readline()
            assert line.startswith("HELD "), line + (holder.stderr.read() if holder.stderr else "")
            held = json.loads(line[5:])
            time.sleep(1.0)  # let the runtime accept what it can
            runtime_fds = fd_count(rt.pid)
            t = time.monotonic()
            existing = _list(target, owner)
            fresh = _list(target)
            took = time.monotonic() - t
        finally:
            if holder.stdin is not None:
                holder.stdin.close()
            holder.wait(30)
        owner.close()
        soft = _soft_limit_of(rt.pid)
    finally:
        rt.stop()
    assert held == HOLD
    assert (existing, fresh) == ("OK", "OK"), (existing, fresh)
    assert soft > 1024
    report("fd-pressure-other-user", held=held, runtime_fds=runtime_fds, soft_limit=soft,
           owner_calls="OK", seconds=round(took, 3))  # fmt: skip


def test_a_connection_without_a_handshake_is_closed() -> None:
    with RuntimeChild({"max_instances": 1, "warm_instances": 0, "handshake_timeout": 2.0}) as rt:
        port = int(rt.endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            t = time.monotonic()
            try:
                while s.recv(4096):  # the server's SETTINGS, then EOF when it gives up on us
                    pass
                closed = True
            except TimeoutError:
                closed = False
            except ConnectionResetError:
                closed = True
            took = time.monotonic() - t
    assert closed and took < 8, took
    report("handshake-timeout", timeout_s=2.0, closed_after_s=round(took, 2))


CHECK_WITHOUT_FDS = r"""
import json, os, resource, socket
from flame_local.servers.peers import PeerCheckUnavailable, same_user_peer
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname())
peer = "ipv4:%s:%d" % c.getsockname()
assert same_user_peer(peer, srv.getsockname()) is True
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
try:
    out = "ALLOWED" if same_user_peer(peer, srv.getsockname()) else "REFUSED"
except PeerCheckUnavailable as e:
    out = "UNAVAILABLE: " + e.strerror
print("RESULT " + json.dumps(out))
"""


def test_uid_check_without_file_descriptors_says_unavailable_not_another_user() -> None:
    from tests.reliability.relkit import REPO

    proc = subprocess.run(
        [PYTHON, "-c", CHECK_WITHOUT_FDS], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    verdict = json.loads(lines[0][7:])
    assert verdict.startswith("UNAVAILABLE: the flame-local runtime cannot check the caller right now"), (
        verdict
    )
    assert "Too many open files" in verdict
