"""Round 2, fault 1: a peer-uid verdict belongs to the connection, never to an address.

Root calls from source port P, the connection is reset, and a real second user (``setpriv``)
connects from the same port at once: it must be refused every time, on both ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.reliability.relkit import report

OTHER = "flkother"
ATTEMPTS = 5

# A one-connection TCP proxy whose outgoing socket is bound to a chosen source port and is reset
# (SO_LINGER 0, no TIME_WAIT) when the client side closes: the server sees that port as the peer.
PROXY = r"""
import socket, struct, threading

def _pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def proxy(target_port, source_port):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)

    def run():
        conn, _ = lsock.accept()
        lsock.close()
        out = socket.socket()
        out.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        out.bind(("127.0.0.1", source_port))
        out.connect(("127.0.0.1", target_port))
        t = threading.Thread(target=_pipe, args=(out, conn), daemon=True)
        t.start()
        _pipe(conn, out)
        t.join(5)
        out.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        out.close()
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return lsock.getsockname()[1], thread

def call(kind, target_port, source_port):
    import grpc
    import pyarrow.flight as flight
    from flamepy.proto import frontend_pb2, frontend_pb2_grpc
    port, thread = proxy(target_port, source_port)
    try:
        if kind == "frontend":
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = frontend_pb2_grpc.FrontendStub(ch)
                try:
                    n = len(stub.ListSession(frontend_pb2.ListSessionRequest(), timeout=10).sessions)
                    return f"ALLOWED ({n} sessions)"
                except grpc.RpcError as e:
                    return f"{e.code().name}: {e.details()}"
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        try:
            return f"ALLOWED ({len(list(client.list_flights()))} objects)"
        except flight.FlightError as e:
            return f"{type(e).__name__}: {str(e).splitlines()[0]}"
        finally:
            client.close()
    finally:
        thread.join(10)
"""

OTHER_CLIENT = (
    PROXY
    + r"""
import json, sys
print("READY", flush=True)
for line in sys.stdin:
    kind, target, source = line.split()
    print("RESULT " + json.dumps(call(kind, int(target), int(source))), flush=True)
"""
)


def _other_user_ready() -> bool:
    if os.getuid() != 0 or not shutil.which("setpriv") or not shutil.which("useradd"):
        return False
    if subprocess.run(["id", OTHER], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER])
        return made.returncode == 0
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not _other_user_ready(), reason="needs root, setpriv and useradd for a second user")
def test_other_user_reusing_roots_source_port_is_refused(runtime) -> None:
    ns: dict = {}
    exec(PROXY, ns)  # the same proxy, as root, in this process
    other = subprocess.Popen(
        ["setpriv", "--reuid", OTHER, "--regid", OTHER, "--clear-groups", PYTHON, "-c", OTHER_CLIENT],
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "HOME"} | {"HOME": "/"},
    )
    targets = {
        "frontend": int(runtime.endpoint.rsplit(":", 1)[1]),
        "cache": int(runtime.cache_endpoint.rsplit(":", 1)[1]),
    }
    verdicts: dict[str, list[str]] = {kind: [] for kind in targets}
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "READY", other.stderr.read() if other.stderr else ""
        for kind, target in targets.items():
            for _ in range(ATTEMPTS):
                port = _free_port()
                mine = ns["call"](kind, target, port)
                assert mine.startswith("ALLOWED"), mine  # the owner gets in from that port
                other.stdin.write(f"{kind} {target} {port}\n")
                other.stdin.flush()
                line = other.stdout.readline()
                assert line.startswith("RESULT "), line + (other.stderr.read() if other.stderr else "")
                verdicts[kind].append(json.loads(line[len("RESULT ") :]))
    finally:
        if other.stdin is not None:
            other.stdin.close()
        other.wait(30)
    let_in = {kind: sum(v.startswith("ALLOWED") for v in vs) for kind, vs in verdicts.items()}
    assert let_in == {"frontend": 0, "cache": 0}, verdicts
    assert all(v.startswith("PERMISSION_DENIED: connection refused") for v in verdicts["frontend"]), verdicts
    assert all(v.startswith("FlightUnauthorizedError") for v in verdicts["cache"]), verdicts
    report("port-reuse-other-user", attempts=ATTEMPTS * 2, let_in=0, frontend=verdicts["frontend"][0])


def test_proxy_helper_binds_the_source_port(tmp_path: Path) -> None:
    """The attack above needs the proxy's source port to be the one the server sees."""
    ns: dict = {}
    exec(PROXY, ns)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    want = _free_port()
    port, thread = ns["proxy"](server.getsockname()[1], want)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        conn, peer = server.accept()
        c.sendall(b"x")
        assert conn.recv(1) == b"x"
        conn.close()
    thread.join(10)
    server.close()
    assert peer[1] == want
