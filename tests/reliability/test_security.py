"""Security: loopback only, other local users refused (both ports and the instance sockets),
package extraction confined to its directory, secrets kept out of uploads, nothing world-readable."""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import os
import stat
import subprocess
import tarfile
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import flamepy
import pytest
from flamepy.core.types import FlameError

from tests.conftest import PYTHON
from tests.kernel_helpers import KernelSession
from tests.reliability.relkit import (
    client_env,
    descendants,
    instance_sockets,
    kval,
    report,
    socket_inodes,
    start_client,
    wait_for,
)


# -- listening sockets ----------------------------------------------------------------------------------------
def _tcp_listeners() -> dict[int, str]:
    """inode -> local address of every listening TCP socket on the machine."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(path).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            hexaddr, port = f[1].rsplit(":", 1)
            raw = b"".join(
                int(hexaddr[i : i + 8], 16).to_bytes(4, "little") for i in range(0, len(hexaddr), 8)
            )
            addr = ipaddress.ip_address(raw)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            out[int(f[9])] = f"{addr}:{int(port, 16)}"
    return out


def test_runtime_and_instances_listen_on_loopback_only(flame_home: Path) -> None:
    import grpc
    from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

    from flame_local import RuntimeSettings
    from flame_local.process import RuntimeProcess

    rp = RuntimeProcess.start(max_instances=2)
    try:
        stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(rp.endpoint.split("://")[1]))
        spec = types_pb2.SessionSpec(application="flmping", min_instances=2)
        stub.CreateSession(frontend_pb2.CreateSessionRequest(session_id="s", session=spec), timeout=10)
        wait_for(lambda: len(instance_sockets(rp.pid)) == 2, 30, "2 bound instances")
        listeners = _tcp_listeners()
        served = sorted(listeners[i] for i in socket_inodes(rp.pid) if i in listeners)
        below = {
            pid: [listeners[i] for i in socket_inodes(pid) if i in listeners] for pid in descendants(rp.pid)
        }
    finally:
        rp.stop()
    ports = {rp.endpoint.rsplit(":", 1)[1], rp.cache_endpoint.rsplit(":", 1)[1]}
    assert {a.rsplit(":", 1)[1] for a in served} == ports and len(served) == 2, served
    assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::1") for a in served), served
    assert len(below) >= 2 and all(tcp == [] for tcp in below.values()), below  # instances: Unix socket only
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ValueError, match="listens on loopback only"):
            RuntimeSettings(host=host)
    report("loopback-only", listeners=served, processes_below=len(below), their_tcp_listeners=0)


# -- another local user ---------------------------------------------------------------------------------------
OTHER_USER = """
import json, os, socket, sys
import grpc, pyarrow as pa, pyarrow.flight as flight
from flamepy.proto import frontend_pb2, frontend_pb2_grpc
info = json.loads(sys.argv[1])
# Everything is imported as root; now become another user before any socket exists.
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(info["frontend"]))
calls = {
    "ListApplication": lambda: stub.ListApplication(frontend_pb2.ListApplicationRequest(), timeout=10),
    "CreateSession": lambda: stub.CreateSession(frontend_pb2.CreateSessionRequest(session_id="evil"), timeout=10),
    "GetSession": lambda: stub.GetSession(frontend_pb2.GetSessionRequest(session_id=info["session"]), timeout=10),
    "WatchTask": lambda: list(stub.WatchTask(frontend_pb2.WatchTaskRequest(session_id=info["session"], task_id="1"), timeout=10)),
    "ListTask": lambda: list(stub.ListTask(frontend_pb2.ListTaskRequest(session_id=info["session"]), timeout=10)),
}
for name, call in calls.items():
    try:
        call()
        out["frontend " + name] = "ALLOWED"
    except grpc.RpcError as e:
        out["frontend " + name] = f"{e.code().name}: {e.details()}"
client = flight.FlightClient(info["cache"])
table = pa.table({"version": pa.array([0], pa.uint64()), "data": pa.array([b"x"], pa.binary())})
def put():
    w, r = client.do_put(flight.FlightDescriptor.for_path("evil/ssn"), table.schema)
    w.write_table(table); w.done_writing(); r.read(); w.close()
fcalls = {
    "ListActions": lambda: list(client.list_actions()),
    "ListFlights": lambda: list(client.list_flights()),
    "DoGet": lambda: client.do_get(flight.Ticket(info["object"].encode() + b":0")).read_all(),
    "DoPut": put,
    "DoAction DELETE": lambda: list(client.do_action(flight.Action("DELETE", info["object"].encode()))),
}
for name, call in fcalls.items():
    try:
        call()
        out["cache " + name] = "ALLOWED"
    except flight.FlightError as e:
        out["cache " + name] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(info["instance_socket"])
    out["instance socket"] = "ALLOWED"
except OSError as e:
    out["instance socket"] = type(e).__name__
for what in ("socket_dir", "home"):
    try:
        os.listdir(info[what])
        out[what] = "ALLOWED"
    except OSError as e:
        out[what] = type(e).__name__
print("RESULT " + json.dumps(out))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
def test_another_user_is_refused_everywhere(runtime, tmp_path: Path) -> None:
    from flamepy.core import put_object

    ssn = flamepy.create_session("flmping", min_instances=1)
    try:
        ssn.invoke(json.dumps({"duration": 1}).encode())
        ref = put_object(f"flmping/{ssn.id}", b"secret bytes")
        sockets = wait_for(lambda: instance_sockets(os.getpid()), 30, "a bound instance")
        sock = next(iter(sockets.values()))
        info = {
            "frontend": runtime.endpoint.split("://")[1],
            "cache": runtime.cache_endpoint,
            "session": ssn.id,
            "object": ref.key,
            "instance_socket": sock,
            "socket_dir": str(Path(sock).parent),
            "home": str(runtime.home),
        }
        mode = stat.S_IMODE(os.stat(Path(sock).parent).st_mode)
        assert mode == 0o700 and os.stat(Path(sock).parent).st_uid == os.getuid()
        script = tmp_path / "other.py"
        script.write_text(OTHER_USER)
        proc = subprocess.run(
            [PYTHON, str(script), json.dumps(info)], capture_output=True, text=True, timeout=120, cwd="/"
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, proc.stdout + proc.stderr
        out = json.loads(lines[0][len("RESULT ") :])
        objects_after = [o.key for o in runtime.cache_store.list_objects() if o.key.startswith("evil/")]
        assert flamepy.get_session(ssn.id).state == flamepy.SessionState.OPEN
    finally:
        ssn.close()
    for name, verdict in out.items():
        if name.startswith("frontend"):
            assert verdict.startswith("PERMISSION_DENIED: connection refused"), (name, verdict)
        elif name.startswith("cache"):
            assert verdict.startswith("FlightUnauthorizedError"), (name, verdict)
        else:
            assert verdict == "PermissionError", (name, verdict)
    assert objects_after == []
    assert "evil" not in [s.metadata.id for s in runtime.store.list_sessions()]
    report("other-user-refused", checks=len(out), refused=len(out), socket_dir_mode="0700")


# -- package extraction ------------------------------------------------------------------------------------------
def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("pyproject.toml")
        data = b"[project]\nname = 'evil'\nversion = '0'\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                payload = target.encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink-out", "symlink-dir"])
def test_package_extraction_cannot_write_outside_its_directory(runtime, tmp_path: Path, kind: str) -> None:
    sentinel = tmp_path / "outside" / f"pwned-{uuid.uuid4().hex[:8]}"
    sentinel.parent.mkdir()
    members = {
        "dotdot": [(f"../../../../../../..{sentinel}", "file", "pwned")],
        "absolute": [(str(sentinel), "file", "pwned")],
        "symlink-out": [("out", "sym", str(sentinel.parent))],
        "symlink-dir": [("d", "sym", str(sentinel.parent)), (f"d/{sentinel.name}", "file", "pwned")],
    }[kind]
    expected = {
        "dotdot": "escapes the target directory",
        "absolute": "has an absolute path",
        "symlink-out": "points outside the target directory",
        "symlink-dir": "is inside symlinked directory 'd'",
    }[kind]
    archive = _tar(tmp_path / "evil.tar.gz", members)
    name = f"evil-{kind}-{uuid.uuid4().hex[:6]}"
    flamepy.register_application(
        name,
        flamepy.ApplicationAttributes(
            command=f"{PYTHON}", arguments=["-c", "pass"], url=archive.as_uri(), installer="python"
        ),
    )
    ssn = flamepy.create_session(name)
    runtime.store.fail_unbindable_tasks = True  # RuntimeSettings' opt-in; Flame leaves the task pending
    try:
        t = time.monotonic()
        with pytest.raises(FlameError) as err:
            ssn.invoke(b"x")
        took = time.monotonic() - t
        # As on Flame v0.6.0 the watched task carries no events: the reason is in the session's
        # bind-failure events (and in GetTask's, which flame_jupyter reads).
        events = flamepy.get_session(ssn.id).events
        assert [e.code for e in events] == [1001] * 5 + [1002], events
        reason = events[0].message
        assert "return_code 10: application installation failed: extract" in reason, (reason, err.value)
        assert expected in reason
    finally:
        runtime.store.fail_unbindable_tasks = False
        ssn.close()
        flamepy.unregister_application(name)
    assert list(sentinel.parent.iterdir()) == []
    report("archive-confined", kind=kind, s_to_error=round(took, 2), error=reason[:160])


# -- secrets never uploaded ----------------------------------------------------------------------------------------
def _expand(blob: bytes, depth: int = 0) -> Iterator[bytes]:
    """``blob``, and what is inside it: gzip, tar members, zlib streams anywhere in it."""
    yield blob
    if depth > 2:
        return
    if blob[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(blob)
        except OSError:
            inner = b""
        if inner:
            yield from _expand(inner, depth + 1)
    try:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    yield from _expand(f.read(), depth + 1)
    except (tarfile.TarError, OSError, EOFError):
        pass
    start, found = 0, 0
    while found < 64:  # zlib streams inside pickles (flame_jupyter compresses some payload parts)
        i = min(
            (j for j in (blob.find(h, start) for h in (b"x\x9c", b"x\x01", b"x\xda")) if j >= 0), default=-1
        )
        if i < 0:
            break
        try:
            inner = zlib.decompressobj().decompress(blob[i:], 64 << 20)
        except zlib.error:
            inner = b""
        if len(inner) > 16:
            found += 1
            yield from _expand(inner, depth + 1)
        start = i + 1


def _where(runtime, token: bytes) -> list[str]:
    """Cache objects (base and deltas) and runtime-home files whose content holds ``token``."""
    hits = []
    for info in runtime.cache_store.list_objects():
        try:
            reply = runtime.cache_store.reply_for(info.key, 0)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            continue
        parts = []
        if getattr(reply.obj, "data", None) is not None:
            parts.append(reply.obj.data.to_pybytes())
        if getattr(reply.obj, "table", None) is not None:
            parts.append(str(reply.obj.table.to_pydict()).encode())
        parts.extend(d.data.to_pybytes() for d in reply.patches)
        if any(token in piece for part in parts for piece in _expand(part)):
            hits.append(f"cache:{info.key}")
    for dirpath, _, files in os.walk(runtime.home):
        for name in files:
            path = Path(dirpath, name)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(token in piece for piece in _expand(data)):
                hits.append(f"home:{path.relative_to(runtime.home)}")
    return hits


FLAMEPY_RUNNER = """
import sys
from flamepy.runner import Runner

def f(x):
    return x + 1

with Runner("plain-flamepy-runner") as rr:
    assert rr.service(f)(1).get() == 2
    print("READY", flush=True)
    sys.stdin.readline()
"""


def test_secrets_next_to_the_notebook_never_reach_the_cache(runtime, tmp_path: Path) -> None:
    secret, control = f"SECRET-{uuid.uuid4().hex}", f"CONTROL-{uuid.uuid4().hex}"
    cwd = tmp_path / "project"
    (cwd / ".git").mkdir(parents=True)
    (cwd / ".env").write_text(f"API_KEY={secret}\n")
    (cwd / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n")
    (cwd / ".git" / "config").write_text(f"[remote]\n  token = {secret}\n")
    (cwd / "helpers.py").write_text("def double(x):\n    return 2 * x\n")  # local: travels by value
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=cwd, extra_env=env) as k:
        k.run("%load_ext flame_jupyter")
        k.run(
            f"import helpers\nCONTROL = {control!r}\ndef use(x):\n    return helpers.double(x), CONTROL\n"
            "%flame_service svc = use"
        )
        assert kval(k, "svc(4).get(timeout=60)") == [8, control]
        k.run("%%flame\nhelpers.double(21)")
        app = kval(k, "svc.app")
        hits = _where(runtime, secret.encode())
        control_hits = _where(runtime, control.encode())
        package = [
            m
            for info in runtime.cache_store.list_objects()
            if info.key.startswith(f"{app}/") and info.key.endswith(".tar.gz")
            for m in tarfile.open(fileobj=io.BytesIO(runtime.cache_store.read_bytes(info.key))).getnames()
        ]
        k.run("%flame stop")
    assert control_hits, "the scan cannot see what flame_jupyter uploads"
    assert hits == [], hits
    assert package == ["pyproject.toml"], package  # flame_jupyter's Runner packages an empty directory
    # Control: flamepy's own Runner packages the working directory; its default excludes keep .git
    # out but not .env or keys.
    proc = start_client(cwd, client_env(runtime.client_env(), home), FLAMEPY_RUNNER, name="plain.py")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.stderr.read()
        plain_hits = _where(runtime, secret.encode())
    finally:
        proc.communicate("go\n", timeout=60)
    assert any(h.startswith("cache:plain-flamepy-runner/") for h in plain_hits), plain_hits
    report(
        "secrets-not-uploaded",
        flame_jupyter_hits=len(hits),
        control_token_hits=len(control_hits),
        flame_jupyter_package=package,
        plain_flamepy_runner_hits=plain_hits,
    )


# -- file modes -----------------------------------------------------------------------------------------------------
def _readable_by_others(root: Path) -> list[str]:
    """Entries below ``root`` another user could read: every directory on the way is o+x and
    the entry itself is o+r."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        chain = [
            root,
            *[
                root.joinpath(*here.relative_to(root).parts[:i])
                for i in range(1, len(here.relative_to(root).parts) + 1)
            ],
        ]
        if not all(os.stat(d).st_mode & stat.S_IXOTH for d in chain):
            continue
        for name in dirnames + filenames:
            st = os.lstat(here / name)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & stat.S_IROTH:
                out.append(str((here / name).relative_to(root)))
    return out


def _group_or_other_bits(paths: list[Path]) -> list[str]:
    return [f"{p} {oct(stat.S_IMODE(os.stat(p).st_mode))}" for p in paths if os.stat(p).st_mode & 0o077]


MODES_CLIENT = """
import sys
import flame_jupyter as fj

def f(x):
    print("hello from the instance", file=sys.stderr)
    return x + 1

with fj.Runner("modes") as rr:
    svc = rr.service(f)
    assert svc(1).get(timeout=60) == 2
    print("READY", flush=True)
    sys.stdin.readline()
"""


def test_nothing_the_runtime_writes_is_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    for var in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
        env.pop(var, None)
    started = subprocess.run(
        [PYTHON, "-m", "flame_local.cli", "start", "--max-instances", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    state = json.loads((home / ".flame" / "local" / "runtime.json").read_text())
    try:
        # flamepy finds the runtime through the ~/.flame/flame.yaml that `flame-local start` wrote
        cenv = client_env({}, home)
        for var in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
            cenv.pop(var, None)
        proc = start_client(tmp_path, cenv, MODES_CLIENT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.stderr.read()
        runtime_home, log_dir = Path(state["home"]), Path(state["log"]).parent
        sockets = wait_for(
            lambda: instance_sockets(state["pid"]), 30, f"an instance of runtime {state['pid']}"
        )
        socket_dir = Path(next(iter(sockets.values()))).parent
        trees = {"home": runtime_home, "sockets": socket_dir, "log dir": log_dir, "~/.flame": home / ".flame"}
        exposed = {name: _readable_by_others(root) for name, root in trees.items()}
        roots = {name: oct(stat.S_IMODE(os.stat(root).st_mode)) for name, root in trees.items()}
        written = [
            home / ".flame" / "flame.yaml",
            home / ".flame" / "local" / "runtime.json",
            Path(state["log"]),
            *sorted(runtime_home.glob("logs/**/*")),
            *sorted(runtime_home.glob("apps/*/download/*")),
            runtime_home,
            *[runtime_home / d for d in ("logs", "work", "apps")],
        ]
        assert any(p.name == "modes.log" for p in written) and any(p.suffix == ".err" for p in written)
        loose = _group_or_other_bits(written)
        proc.communicate("go\n", timeout=60)
    finally:
        subprocess.run([PYTHON, "-m", "flame_local.cli", "stop"], env=env, capture_output=True, timeout=60)
    assert all(mode == "0o700" for mode in roots.values()), roots
    assert exposed == {name: [] for name in trees}, exposed
    assert loose == [], loose
    assert not (home / ".flame" / "flame.yaml").exists()  # `flame-local stop` removes the one it wrote
    report("file-modes", roots=roots, runtime_written_files_checked=len(written), readable_by_others=0)
