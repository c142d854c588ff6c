"""Bad input, table-driven: every case gets a specific error and changes no state.

Four layers: the magics and the SDK in a real kernel; the configuration (flame.yaml, endpoints);
raw gRPC requests to the runtime's Frontend port; raw Arrow Flight requests to its cache port.
State is compared before and after each case: the kernel's services, names and connection, and
the runtime's applications, sessions, task counts and cached objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flamepy
import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

from tests.kernel_helpers import KernelSession
from tests.reliability.relkit import client_env, kval, report, run_client


def runtime_state(runtime) -> dict[str, Any]:
    """Applications, sessions (open, task counts) and cached object keys of the runtime."""
    sessions = {}
    for s in runtime.store.list_sessions():
        st = s.status
        sessions[s.metadata.id] = (st.state, st.pending, st.running, st.succeed, st.failed, st.cancelled)
    return {
        "apps": sorted(a.name for a in runtime.store.list_applications()),
        "sessions": sessions,
        "objects": sorted(o.key for o in runtime.cache_store.list_objects()),
    }


# -- 1. the magics and the SDK in a kernel ----------------------------------------------------------------
KERNEL_SETUP = """
import socket, threading
import flame_jupyter as fj

def sq(x):
    return x * x

class Counter:
    def add(self, a):
        return a

FH = open(__file__ if "__file__" in dir() else "/dev/null")
def reads_file():
    return FH.read()

SOCK = socket.socket()
def uses_socket():
    return SOCK.fileno()

GEN = (i for i in range(3))

%flame_service counter = Counter
%flame_service closed_svc = sq
closed_svc.close()

import bigpkg
"""

KERNEL_CASES: dict[str, tuple[str, str]] = {
    "non-callable target (int)": ("%flame_service x = 42", "cannot serve 42 (int)"),
    "non-callable target (None)": ("%flame_service x = None", "cannot serve None (NoneType)"),
    "non-callable target, SDK": (
        "get_ipython().find_line_magic('flame_service').__self__.runner.service('text')",
        "cannot serve 'text' (str)",
    ),
    "class service called directly": (
        "counter(1)",
        "service 'counter' serves a class; call one of its methods: add",
    ),
    "unknown method of a service": ("counter.nosuch(1)", "service 'counter' has no method 'nosuch'"),
    "call on a closed service": ("closed_svc(2)", "service 'closed_svc' is closed"),
    "uncapturable: open file": ("%flame_service x = reads_file", "cannot capture 'FH'"),
    "uncapturable: socket": ("%flame_service x = uses_socket", "cannot capture 'SOCK'"),
    "uncapturable: generator in a cell": ("%%flame\nnext(GEN)", "cannot capture 'GEN'"),
    "oversized local package": (
        "%flame_service x = bigpkg.f",
        "local package 'bigpkg' has 65 MiB of source; install it on the executors instead",
    ),
    "--cpu 0": ("%flame_service --cpu 0 x = sq", "--cpu 0: ask for at least 1 CPU"),
    "endpoint without scheme": (
        "%flame connect --endpoint localhost:1",
        "needs a scheme, e.g. http://localhost:1",
    ),
    "unreachable endpoint": (
        "%flame connect --endpoint http://127.0.0.1:1",
        "Cannot reach the Flame cluster at http://127.0.0.1:1: Connection refused",
    ),
    "malformed endpoint URL": ("%flame connect --endpoint http://[::1", "is not a valid URL"),
    "--cache without --endpoint": (
        "%flame connect --cache grpc://127.0.0.1:1",
        "--cache needs --endpoint too",
    ),
    "bad --package-storage": (
        "%flame connect --package-storage ftp://x --endpoint http://127.0.0.1:1",
        "use a file://, http(s):// or grpc(s):// URL",
    ),
    "--max-instances 0": (
        "%flame start --max-instances 0",
        "--max-instances 0: the runtime needs at least 1",
    ),
}


def _big_local_package(cwd: Path) -> None:
    pkg = cwd / "bigpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def f(x):\n    return x\n")
    (pkg / "blob.py").write_bytes(b"# " + b"x" * (65 << 20) + b"\n")  # never imported; only its size counts


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    cwd = tmp_path_factory.mktemp("bad-input-cwd")
    _big_local_package(cwd)
    env = {"HOME": str(tmp_path_factory.mktemp("bad-input-home")), **runtime.client_env()}
    with KernelSession(cwd=cwd, extra_env=env) as k:
        k.run("%load_ext flame_jupyter")
        k.run(KERNEL_SETUP)
        yield k


KERNEL_STATE = (
    "from flame_jupyter import connection\nm = get_ipython().find_line_magic('flame_service').__self__\n"
    "[sorted(m.services), sorted(n for n in get_ipython().user_ns if not n.startswith('_') and n != 'm'), "
    "str(connection.current())]"
)


@pytest.mark.parametrize("case", sorted(KERNEL_CASES))
def test_kernel_bad_input(kernel: KernelSession, runtime, case: str) -> None:
    code, expected = KERNEL_CASES[case]
    before = kval(kernel, KERNEL_STATE), runtime_state(runtime)
    r = kernel.execute(code, timeout=60)
    assert r.status == "error", (case, r.stdout)
    # a UsageError is printed on stderr; any other error comes as an error message
    text = f"{r.error['ename']}: {r.error['evalue']}" if r.error else r.stderr.strip()
    assert expected in text, (case, text)
    assert "Traceback" not in text
    after = kval(kernel, KERNEL_STATE), runtime_state(runtime)
    assert after == before, case
    report("bad-input", layer="kernel", what=case, error=text[:200])


# -- 2. configuration ----------------------------------------------------------------------------------------
CONFIG_CLIENT = """
import json, os, sys
from pathlib import Path
import flame_jupyter as fj
from flame_jupyter import connection

cases = json.loads(Path(os.environ["CASES_FILE"]).read_text())
out = {}
for name, case in cases.items():
    home = Path(case["home"])
    (home / ".flame").mkdir(parents=True, exist_ok=True)
    if case["yaml"] is not None:
        (home / ".flame" / "flame.yaml").write_text(case["yaml"])
    os.environ["HOME"] = str(home)
    for var in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
        os.environ.pop(var, None)
    try:
        connection.connect(embedded=case.get("embedded"), timeout=5)
        if case.get("runner"):
            fj.Runner()
        out[name] = ["no error", str(connection.current())]
    except Exception as e:
        out[name] = [f"{type(e).__name__}: {e}", str(connection.current())]
    connection.disconnect()
print("RESULT " + json.dumps(out))
"""


def _yaml(endpoint: str, cache: str = "grpc://127.0.0.1:9", extra: str = "") -> str:
    return (
        "current-context: c\ncontexts:\n  - name: c\n    cluster:\n"
        f'      endpoint: "{endpoint}"\n    cache:\n      endpoint: "{cache}"\n{extra}'
    )


def test_configuration_bad_input(tmp_path: Path, runtime, flame_home: Path) -> None:
    storage = "    package:\n      storage: file:///no/such/dir/flame-packages\n"
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "flame.yaml is not YAML": ({"yaml": "contexts: [unclosed"}, "cannot be read"),
        "flame.yaml without a cluster endpoint": (
            {"yaml": "current-context: c\ncontexts:\n  - name: c\n    cluster: {}\n"},
            "FlameConfigError",
        ),
        "flame.yaml endpoint without scheme": ({"yaml": _yaml("127.0.0.1:1")}, "needs a scheme"),
        "flame.yaml endpoint unreachable": (
            {"yaml": _yaml("http://127.0.0.1:1")},
            "Cannot reach the Flame cluster at http://127.0.0.1:1: Connection refused",
        ),
        "missing storage dir": (
            {"yaml": _yaml(runtime.endpoint, runtime.cache_endpoint, storage), "runner": True},
            "Storage directory does not exist",
        ),
        "no cluster and embedded forbidden": (
            {"yaml": None, "embedded": False},
            "No Flame cluster is configured",
        ),
    }
    spec = {name: dict(c, home=str(tmp_path / f"h{i}")) for i, (name, (c, _)) in enumerate(cases.items())}
    before = runtime_state(runtime)
    (tmp_path / "cases.json").write_text(json.dumps(spec))
    env = client_env({}, flame_home, CASES_FILE=str(tmp_path / "cases.json"))
    for var in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT"):
        env.pop(var, None)
    result = run_client(tmp_path, env, CONFIG_CLIENT, timeout=120)
    for name, (_, expected) in cases.items():
        error, conn = result[name]
        assert expected in error, (name, error)
        if spec[name].get("runner"):
            assert conn.startswith("Flame cluster at"), (name, conn)  # the connection itself was fine
        else:
            assert conn == "None", (name, conn)  # not connected, and no embedded runtime started
        report("bad-input", layer="config", what=name, error=error[:200])
    assert runtime_state(runtime) == before


# -- 3. raw gRPC to the runtime's Frontend port ------------------------------------------------------------
def _stub(runtime) -> frontend_pb2_grpc.FrontendStub:
    stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(runtime.endpoint.split("://")[1]))
    stub.runtime = runtime  # type: ignore[attr-defined] - for the raw-bytes cases
    return stub


def _session_spec(app: str = "flmping", **kw: Any) -> types_pb2.SessionSpec:
    return types_pb2.SessionSpec(application=app, **kw)


GRPC_CASES: dict[str, tuple[Callable[[Any, str], Any], grpc.StatusCode, str]] = {
    "CreateSession without a spec": (
        lambda s, sid: s.CreateSession(frontend_pb2.CreateSessionRequest(session_id="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "session spec",
    ),
    "CreateSession with an empty id": (
        lambda s, sid: s.CreateSession(
            frontend_pb2.CreateSessionRequest(session_id="", session=_session_spec())
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid session id",
    ),
    "CreateSession of an unknown application": (
        lambda s, sid: s.CreateSession(
            frontend_pb2.CreateSessionRequest(session_id="x", session=_session_spec("nope"))
        ),
        # Flame v0.6.0's answer (SQLite's constraint), pinned in tests/conformance/test_flame_fidelity.py
        grpc.StatusCode.INTERNAL,
        "NOT NULL constraint failed: sessions.application",
    ),
    "CreateSession with min_instances not a multiple of batch_size": (
        lambda s, sid: s.CreateSession(
            frontend_pb2.CreateSessionRequest(
                session_id="x", session=_session_spec(min_instances=3, batch_size=2)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be 0 or a multiple of batch_size",
    ),
    "OpenSession of an unknown session": (
        lambda s, sid: s.OpenSession(frontend_pb2.OpenSessionRequest(session_id="no-such-session")),
        grpc.StatusCode.NOT_FOUND,
        "Session no-such-session not found",
    ),
    "OpenSession with a different spec": (
        lambda s, sid: s.OpenSession(
            frontend_pb2.OpenSessionRequest(session_id=sid, session=_session_spec(priority=7))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec mismatch: priority differs",
    ),
    "CreateTask without a task": (
        lambda s, sid: s.CreateTask(frontend_pb2.CreateTaskRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        "",
    ),
    "CreateTask in an unknown session": (
        lambda s, sid: s.CreateTask(
            frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id="no-such-session", input=b"x"))
        ),
        grpc.StatusCode.NOT_FOUND,
        "session <no-such-session> not found",
    ),
    "CreateTask with a 5 MiB input": (
        lambda s, sid: s.CreateTask(
            frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id=sid, input=b"x" * (5 << 20)))
        ),
        grpc.StatusCode.OUT_OF_RANGE,  # tonic's decode limit, as Flame v0.6.0 answers
        "decoded message length too large",
    ),
    "GetTask with a non-numeric id": (
        lambda s, sid: s.GetTask(frontend_pb2.GetTaskRequest(session_id=sid, task_id="../1")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid task id",
    ),
    "WatchTask of an unknown task": (
        # Flame v0.6.0 ends the stream at once, empty and OK (Controller::watch_task finds no task)
        lambda s, sid: _no_messages(
            s.WatchTask(frontend_pb2.WatchTaskRequest(session_id=sid, task_id="999"), timeout=10)
        ),
        grpc.StatusCode.OK,
        "the stream ended with no message",
    ),
    "DeleteSession of an open session": (
        lambda s, sid: s.DeleteSession(frontend_pb2.DeleteSessionRequest(session_id=sid)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "close it before deleting it",
    ),
    "UnregisterApplication of an app with open sessions": (
        lambda s, sid: _result(
            s.UnregisterApplication(frontend_pb2.UnregisterApplicationRequest(name="flmping"))
        ),
        grpc.StatusCode.OK,
        "open sessions in the application",  # Flame v0.6.0's words
    ),
    "RegisterApplication with a path-traversal name": (
        lambda s, sid: _result(
            s.RegisterApplication(
                frontend_pb2.RegisterApplicationRequest(
                    name="../evil", application=types_pb2.ApplicationSpec(command="/bin/true")
                )
            )
        ),
        grpc.StatusCode.OK,
        "invalid characters (path traversal)",
    ),
    "RegisterApplication with a relative working_directory": (
        lambda s, sid: s.RegisterApplication(
            frontend_pb2.RegisterApplicationRequest(
                name="wd", application=types_pb2.ApplicationSpec(command="/bin/true", working_directory="rel")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "working_directory must be an absolute path",
    ),
    "garbage bytes as a request": (
        lambda s, sid: _raw(s.runtime, "/flame.v1.Frontend/CreateSession", b"\xff\xff\xff\xff\x0f"),
        grpc.StatusCode.INTERNAL,
        "",
    ),
    "unknown method": (
        lambda s, sid: _raw(s.runtime, "/flame.v1.Frontend/DropEverything", b""),
        grpc.StatusCode.UNIMPLEMENTED,
        "",
    ),
}


def _result(res: types_pb2.Result) -> None:
    """Application calls answer with Result{return_code: -1, message} (as Flame)."""
    if res.return_code != 0:
        raise _ResultError(res.message)


class _ResultError(Exception):
    pass


def _no_messages(stream: Any) -> None:
    """A stream that ends with no message (bounded by the call's timeout) is the expected answer."""
    if not list(stream):
        raise _ResultError("the stream ended with no message")


def _raw(runtime, method: str, body: bytes) -> bytes:
    with grpc.insecure_channel(runtime.endpoint.split("://")[1]) as channel:
        return channel.unary_unary(method)(body, timeout=10)


@pytest.fixture(scope="module")
def open_session(runtime) -> Iterator[str]:
    ssn = flamepy.create_session("flmping")
    try:
        yield ssn.id
    finally:
        ssn.close()


@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_grpc_bad_input(runtime, open_session: str, case: str) -> None:
    call, code, expected = GRPC_CASES[case]
    stub = _stub(runtime)
    before = runtime_state(runtime)
    if code == grpc.StatusCode.OK:
        with pytest.raises(_ResultError) as res:
            call(stub, open_session)
        text = str(res.value)
    else:
        with pytest.raises(grpc.RpcError) as err:
            call(stub, open_session)
        assert err.value.code() == code, (case, err.value.code(), err.value.details())
        text = err.value.details() or ""
    assert expected in text, (case, text)
    assert "Traceback" not in text
    assert runtime_state(runtime) == before, case
    # and the runtime still answers
    assert stub.GetSession(frontend_pb2.GetSessionRequest(session_id=open_session), timeout=10).metadata.id
    report("bad-input", layer="grpc", what=case, error=f"{code.name}: {text[:150]}")


# -- 4. raw Arrow Flight to the runtime's cache port ---------------------------------------------------------
def _put(client: flight.FlightClient, descriptor: flight.FlightDescriptor, table: pa.Table) -> None:
    writer, reader = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.done_writing()
    reader.read()
    writer.close()


_ROW = pa.table({"version": pa.array([0], pa.uint64()), "data": pa.array([b"x"], pa.binary())})

FLIGHT_CASES: dict[str, tuple[Callable[[flight.FlightClient], Any], str]] = {
    "DoGet ticket that is not UTF-8": (
        lambda c: c.do_get(flight.Ticket(b"\xff\xfe")).read_all(),
        "Invalid ticket",
    ),
    "DoGet ticket with '..'": (lambda c: c.do_get(flight.Ticket(b"a/../b/c:0")).read_all(), ".."),
    "DoGet ticket with a bad version": (
        lambda c: c.do_get(flight.Ticket(b"app/ssn/obj:x1")).read_all(),
        "Invalid version: invalid digit",
    ),
    "DoGet of an unknown key": (lambda c: c.do_get(flight.Ticket(b"nope/ssn/obj:0")).read_all(), "not found"),
    "DoPut to a key with '..'": (
        lambda c: _put(c, flight.FlightDescriptor.for_path("app/../etc"), _ROW),
        "..",
    ),
    "DoPut with a non-PATCH command": (
        lambda c: _put(c, flight.FlightDescriptor.for_command(b"DROP TABLE"), _ROW),
        "key must be provided",
    ),
    "DoPut PATCH of a missing object": (
        lambda c: _put(c, flight.FlightDescriptor.for_command(b"PATCH:app/ssn/missing"), _ROW),
        "not found",
    ),
    "DoPut with a wrong schema": (
        lambda c: _put(c, flight.FlightDescriptor.for_path("app/ssn"), pa.table({"x": [1]})),
        "Invalid version column",
    ),
    "DoAction of an unknown type": (
        lambda c: list(c.do_action(flight.Action("DROP", b"app/ssn"))),
        "Unknown action type: DROP",
    ),
    "DoAction DELETE with '..'": (lambda c: list(c.do_action(flight.Action("DELETE", b"app/../x"))), ".."),
    "GetFlightInfo with an empty path": (
        lambda c: c.get_flight_info(flight.FlightDescriptor.for_command(b"x")),
        "Empty descriptor path",
    ),
    "DoExchange": (
        lambda c: c.do_exchange(flight.FlightDescriptor.for_path("app/ssn"))[1].read_all(),
        "not implemented",
    ),
}


@pytest.mark.parametrize("case", sorted(FLIGHT_CASES))
def test_flight_bad_input(runtime, case: str) -> None:
    call, expected = FLIGHT_CASES[case]
    client = flight.FlightClient(runtime.cache_endpoint)
    before = runtime_state(runtime)
    with pytest.raises(flight.FlightError) as err:
        call(client)
    text = str(err.value)
    assert expected in text, (case, text)
    assert "Traceback" not in text
    assert runtime_state(runtime) == before, case
    assert list(client.list_actions())  # still serving
    report(
        "bad-input",
        layer="flight",
        what=case,
        error=f"{type(err.value).__name__}: {text.splitlines()[0][:150]}",
    )


def test_cache_key_with_dotdot_through_flamepy(runtime) -> None:
    from flamepy.core import put_object

    before = runtime_state(runtime)
    with pytest.raises(Exception) as err:  # noqa: B017 - flamepy raises pyarrow's FlightError
        put_object("app/../escape", {"x": 1})
    assert ".." in str(err.value)
    assert runtime_state(runtime) == before
    report(
        "bad-input",
        layer="flamepy",
        what="put_object key prefix with '..'",
        error=str(err.value).splitlines()[0],
    )
