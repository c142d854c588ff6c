"""Payloads run by the real ``flamepy.runner.runpy`` service in a process without flame_jupyter.

The helpers here (:func:`run_on_executor`, :data:`DIR_STORE_SOURCE`) are reused by the kernel
tests. The executor process blocks ``flame_jupyter``/``IPython``/``ipykernel`` imports with a
``sys.meta_path`` finder, drives ``FlameRunpyService`` through session enter and task invoke
(with its object-cache calls redirected to a directory), and reports results and errors.
"""

from __future__ import annotations

import linecache
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from flamepy.runner.types import RunnerContext, RunnerRequest

from flame_jupyter import live_state
from flame_jupyter.capture import CaptureError, Capturer, MemoryObjectStore
from flame_jupyter.remote.wire import EXPECT_KWARG, METHOD_KWARG

EXECUTOR_SCRIPT = r"""
import sys

_BLOCKED = ("flame_jupyter", "IPython", "ipykernel")
_ALSO_BLOCKED = tuple(a[len("--block="):] for a in sys.argv[3:] if a.startswith("--block="))


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED + _ALSO_BLOCKED:
            raise ImportError("%s is not installed on this executor" % name)
        return None


sys.meta_path.insert(0, _Block())
assert not [m for m in sys.modules if m.partition(".")[0] in _BLOCKED]

import os
import traceback

import cloudpickle
import flamepy.core
import flamepy.core.cache
import flamepy.runner.runpy as runpy_mod
from flamepy.core import ObjectRef
from flamepy.core.service import ApplicationContext, SessionContext, TaskContext

plan = cloudpickle.loads(open(sys.argv[1], "rb").read())
STORE = plan["store_dir"]
FETCHES = []


def _path(key):
    return os.path.join(STORE, key.replace("/", "__"))


def get_object(ref, deserializer=None):
    FETCHES.append(ref.key)
    with open(_path(ref.key), "rb") as fh:
        return cloudpickle.loads(fh.read())


_n = [0]


def put_object(prefix, obj):
    _n[0] += 1
    key = "%s/result-%d" % (prefix, _n[0])
    with open(_path(key), "wb") as fh:
        fh.write(cloudpickle.dumps(obj))
    return ObjectRef(endpoint="file://" + STORE, key=key, version=1)


UPDATES = []


def update_object(ref, obj):
    UPDATES.append(ref.key)
    with open(_path(ref.key), "wb") as fh:
        fh.write(cloudpickle.dumps(obj))
    return ref


runpy_mod.get_object = get_object
runpy_mod.put_object = put_object
runpy_mod.update_object = update_object
flamepy.core.get_object = get_object
flamepy.core.cache.get_object = get_object

ctx_key = "app/ssn/context"
with open(_path(ctx_key), "wb") as fh:
    fh.write(cloudpickle.dumps(plan["context"]))
ctx_ref = ObjectRef(endpoint="file://" + STORE, key=ctx_key, version=1)

out = {"enter_error": None, "results": []}


def _err(exc):
    return {
        "ok": False,
        "type": "%s.%s" % (type(exc).__module__, type(exc).__qualname__),
        "message": str(exc),
        "traceback": traceback.format_exc(),
    }


service = runpy_mod.FlameRunpyService()
session = SessionContext(ctx_ref.encode(), "ssn", ApplicationContext(name="app"))
try:
    service.on_session_enter(session)
except Exception as exc:
    out["enter_error"] = _err(exc)
else:
    for i, request in enumerate(plan["requests"]):
        try:
            output = service.on_task_invoke(TaskContext(str(i), "ssn", request))
            value = get_object(ObjectRef.decode(output))
            try:
                data = cloudpickle.dumps(value)
            except Exception:
                data = None
            out["results"].append({"ok": True, "repr": repr(value), "value": data})
        except Exception as exc:
            out["results"].append(_err(exc))

out["fetches"] = FETCHES
out["updates"] = UPDATES
out["leaked"] = sorted(m for m in sys.modules if m.partition(".")[0] in _BLOCKED)
out["cwd"] = os.getcwd()
out["path"] = list(sys.path)
with open(sys.argv[2], "wb") as fh:
    fh.write(cloudpickle.dumps(out))
"""

#: Object store writing to a directory in the format the executor script reads. Source so a
#: kernel can ``exec`` it too.
DIR_STORE_SOURCE = '''
class DirStore:
    """ObjectStore in a directory: refs are flamepy ObjectRefs, files hold cloudpickled bytes."""

    def __init__(self, root):
        import os
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.puts = []

    def _path(self, key):
        import os
        return os.path.join(self.root, key.replace("/", "__"))

    def put(self, key_hint, data):
        import uuid
        import cloudpickle
        from flamepy.core import ObjectRef
        key = "fjtest/objects/" + uuid.uuid4().hex
        with open(self._path(key), "wb") as fh:
            fh.write(cloudpickle.dumps(bytes(data)))
        self.puts.append(key_hint)
        return ObjectRef(endpoint="file://" + self.root, key=key, version=1)

    def get(self, ref):
        import cloudpickle
        with open(self._path(ref.key), "rb") as fh:
            return cloudpickle.loads(fh.read())
'''

_ns: dict[str, Any] = {}
exec(DIR_STORE_SOURCE, _ns)
DirStore = _ns["DirStore"]


def make_request(
    method: str | None = None, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
) -> bytes:
    """A task input exactly as flamepy's RunnerService wrappers build it."""
    request = RunnerRequest(method=method, args=args if args else None, kwargs=kwargs if kwargs else None)
    return cloudpickle.dumps(request, protocol=cloudpickle.DEFAULT_PROTOCOL)


def context_bytes(execution_object: Any) -> bytes:
    """The session common data exactly as flamepy's RunnerService builds it."""
    return cloudpickle.dumps(
        RunnerContext(execution_object=execution_object), protocol=cloudpickle.DEFAULT_PROTOCOL
    )


def run_on_executor(
    context: bytes,
    requests: list[bytes],
    *,
    store_dir: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    timeout: float = 120,
    python: str = sys.executable,
    block: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the stock runpy service on ``context`` and ``requests`` in a fresh interpreter.

    The interpreter's cwd and ``sys.path`` contain only a fresh ``workdir/executor`` directory.
    """
    exe_dir = Path(workdir) / "executor"
    exe_dir.mkdir(parents=True, exist_ok=True)
    script = exe_dir / "executor_main.py"
    script.write_text(EXECUTOR_SCRIPT)
    plan = exe_dir / "plan.pkl"
    plan.write_bytes(
        cloudpickle.dumps({"context": context, "requests": requests, "store_dir": str(store_dir)})
    )
    out = exe_dir / "out.pkl"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [python, str(script), str(plan), str(out), *(f"--block={b}" for b in block)],
        cwd=str(exe_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or not out.exists():
        raise AssertionError(f"executor failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = cloudpickle.loads(out.read_bytes())
    assert result["leaked"] == [], result["leaked"]
    result["stderr"] = proc.stderr
    return result


def values(result: dict[str, Any]) -> list[Any]:
    """Decoded results; failing calls raise AssertionError with the remote traceback."""
    assert result["enter_error"] is None, result["enter_error"]
    out = []
    for r in result["results"]:
        assert r["ok"], r["traceback"]
        out.append(cloudpickle.loads(r["value"]))
    return out


# --------------------------------------------------------------------------- fake notebook


def notebook(*cells: str) -> dict[str, Any]:
    """A ``__main__``-like namespace where each cell ran like IPython runs cells."""
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    for i, cell in enumerate(cells):
        run_cell(ns, cell, i)
    return ns


def run_cell(ns: dict[str, Any], cell: str, n: int = 0) -> None:
    source = textwrap.dedent(cell)
    filename = f"/tmp/ipykernel_fjtest/{abs(hash((source, n)))}.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), ns)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    return DirStore(tmp_path / "store")


@pytest.fixture
def capturer(store: Any) -> Capturer:
    return Capturer(store=store, threshold=1 << 20)


def call(captured: Any, *args: Any, method: str | None = None, **kwargs: Any) -> bytes:
    a, kw = captured.prepare_call(args, kwargs)
    return make_request(method, a, kw)


# --------------------------------------------------------------------------- tests


def test_function_calls_notebook_helpers(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook(
        """
        import math
        from math import sqrt
        K = 10
        def g(x):
            return x * K
        def f(x):
            return g(x) + sqrt(16) + math.floor(1.5)
        """
    )
    captured = capturer.capture(ns["f"], ns=ns)
    assert set(captured.names) == {"g", "K", "sqrt", "math"}
    result = run_on_executor(
        context_bytes(captured.execution_object), [call(captured, 3)], store_dir=store.root, workdir=tmp_path
    )
    assert values(result) == [35.0]


def test_each_call_sees_current_globals_unless_snapshot(
    capturer: Capturer, store: Any, tmp_path: Path
) -> None:
    ns = notebook("K = 1\ndef f(x):\n    return x + K\n")
    fresh = capturer.capture(ns["f"], ns=ns)
    frozen = capturer.capture(ns["f"], ns=ns, snapshot=True)
    first = (call(fresh, 1), call(frozen, 1))
    ns["K"] = 100
    second = (call(fresh, 1), call(frozen, 1))
    got = {}
    for i, cap in enumerate((fresh, frozen)):
        result = run_on_executor(
            context_bytes(cap.execution_object),
            [first[i], second[i]],
            store_dir=store.root,
            workdir=tmp_path / str(i),
        )
        got[i] = values(result)
    assert got[0] == [2, 101]
    assert got[1] == [2, 2]


def instance_call(captured: Any, method: str, *args: Any, expect: tuple[int, int] = (0, 0)) -> bytes:
    """A call of an instance service's method exactly as ``Service.submit`` sends it."""
    a, kw = captured.prepare_call(args, {})
    return make_request(None, a, {**kw, METHOD_KWARG: method, EXPECT_KWARG: expect})


def instance_context(captured: Any) -> bytes:
    """An instance service's common data as ``Runner.service`` registers it."""
    ctx = RunnerContext(execution_object=captured.live_object, **live_state.registration(None, 0))
    assert (ctx.stateful, ctx.autoscale, ctx.min_instances, ctx.max_instances) == (False, False, 1, 1)
    return cloudpickle.dumps(ctx, protocol=cloudpickle.DEFAULT_PROTOCOL)


COUNTER = """
import threading
class Counter:
    def __init__(self, start):
        self.n = start
    def add(self, k):
        self.n += k
        return self.n
    def add_then_fail(self, k):
        self.n += k
        raise ValueError(f"failed at {self.n}")
    def lock(self):
        self.guard = threading.Lock()  # not picklable: fine, the object is never saved
        return self.n
    @property
    def value(self):
        return self.n
counter = Counter(10)
"""


def test_instance_service_stays_live_and_is_never_reloaded_or_saved(
    capturer: Capturer, store: Any, tmp_path: Path
) -> None:
    ns = notebook(COUNTER)
    captured = capturer.capture(ns["counter"], ns=ns)
    assert [n for n in dir(captured.execution_object) if not n.startswith("_")] == [
        "add",
        "add_then_fail",
        "lock",
    ]
    calls = [("add", 1), ("lock",), ("add", 3), ("add_then_fail", 5), ("add", 0)]
    result = run_on_executor(
        instance_context(captured),
        [instance_call(captured, *c, expect=(0, i)) for i, c in enumerate(calls)],
        store_dir=store.root,
        workdir=tmp_path,
    )
    assert result["enter_error"] is None, result["enter_error"]
    outcomes = [r.get("message") if not r["ok"] else cloudpickle.loads(r["value"]) for r in result["results"]]
    # a failing call leaves the object as the method left it (as a Ray actor or a local object)
    assert outcomes == [11, 11, 14, "failed at 19", 19]
    assert result["fetches"].count("app/ssn/context") == 1  # loaded once, at session enter
    assert result["updates"] == []  # and never saved back


def test_a_new_instance_refuses_calls_that_expect_lost_state(
    capturer: Capturer, store: Any, tmp_path: Path
) -> None:
    ns = notebook(COUNTER)
    captured = capturer.capture(ns["counter"], ns=ns)
    requests = [
        instance_call(captured, "add", 1, expect=(0, 2)),  # the kernel saw 2 calls run elsewhere
        instance_call(captured, "add", 1, expect=(0, 3)),  # sent before it saw the loss
        instance_call(captured, "add", 1, expect=(1, 0)),  # after the loss: the new copy
        instance_call(captured, "add", 1, expect=(1, 1)),
        instance_call(captured, "add", 1, expect=(0, 4)),  # a late call of the lost epoch
    ]
    result = run_on_executor(instance_context(captured), requests, store_dir=store.root, workdir=tmp_path)
    got = [r["ok"] and cloudpickle.loads(r["value"]) for r in result["results"]]
    assert got == [False, False, 11, 12, False]
    lost = result["results"][0]
    assert lost["message"].startswith("flame_jupyter: this service's state was lost because the instance")
    assert "at least 2 earlier call(s)" in lost["message"] and "This call did not run" in lost["message"]
    assert live_state.LOST_MARK in lost["message"]


def test_class_service_with_methods(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook(
        """
        SCALE = 2
        class Base:
            def describe(self):
                return "base"
        class Model(Base):
            def __init__(self):
                self.calls = 0
            def predict(self, x):
                self.calls += 1
                return x * SCALE
            def describe(self):
                return "model/" + super().describe()
            @classmethod
            def kind(cls):
                return cls.__name__
            @staticmethod
            def version():
                return SCALE + 1
        """
    )
    captured = capturer.capture(ns["Model"], ns=ns)
    cls = captured.execution_object
    assert isinstance(cls, type)
    assert sorted(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))) == [
        "describe",
        "kind",
        "predict",
        "version",
    ]
    requests = [
        call(captured, 4, method="predict"),
        call(captured, method="describe"),
        call(captured, method="kind"),
        call(captured, method="version"),
        call(captured, 5, method="predict"),
    ]
    result = run_on_executor(context_bytes(cls), requests, store_dir=store.root, workdir=tmp_path)
    assert values(result) == [8, "model/base", "Model", 3, 10]


def test_user_exception_keeps_type_and_cell_lines(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook(
        """
        def check(x):
            if x < 0:
                raise ValueError(f"negative input: {x}")
            return x
        """
    )
    captured = capturer.capture(ns["check"], ns=ns)
    result = run_on_executor(
        context_bytes(captured.execution_object), [call(captured, -1)], store_dir=store.root, workdir=tmp_path
    )
    err = result["results"][0]
    assert not err["ok"]
    assert err["type"] == "builtins.ValueError"
    assert err["message"] == "negative input: -1"
    assert 'raise ValueError(f"negative input: {x}")' in err["traceback"]
    assert "/tmp/ipykernel_fjtest/" in err["traceback"]


def test_version_skew_is_a_clear_error(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook("def f():\n    return 1\n")
    captured = capturer.capture(ns["f"], ns=ns)
    captured.state["header"].update(python="3.10.4", dill="0.3.9")
    result = run_on_executor(
        context_bytes(captured.execution_object), [call(captured)], store_dir=store.root, workdir=tmp_path
    )
    err = result["results"][0]
    assert err["type"] == "builtins.RuntimeError"
    major, minor = sys.version_info[:2]
    import dill

    assert err["message"].startswith(
        f"flame_jupyter payload was made with Python 3.10 / dill 0.3.9 / cloudpickle {cloudpickle.__version__} "
        f"but this executor has Python {major}.{minor} / dill {dill.__version__} / cloudpickle {cloudpickle.__version__}; "
    )
    assert "install dill==0.3.9" in err["message"]


def test_version_skew_on_class_service_reported_at_call(
    capturer: Capturer, store: Any, tmp_path: Path
) -> None:
    ns = notebook("class C:\n    def f(self):\n        return 1\n")
    captured = capturer.capture(ns["C"], ns=ns)
    captured.state["header"]["cloudpickle"] = "2.2.1"
    result = run_on_executor(
        context_bytes(captured.execution_object),
        [call(captured, method="f")],
        store_dir=store.root,
        workdir=tmp_path,
    )
    assert result["enter_error"] is None
    err = result["results"][0]
    assert err["type"] == "builtins.RuntimeError"
    assert "cloudpickle 2.2.1 but this executor has" in err["message"]


def test_large_value_uploaded_once_and_fetched_by_reference(store: Any, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    capturer = Capturer(store=store, threshold=1 << 20)
    ns = notebook("def total():\n    return float(BIG.sum())\ndef first():\n    return float(BIG[0])\n")
    ns["BIG"] = np.ones(3 * (1 << 20) // 8)
    a = capturer.capture(ns["total"], ns=ns)
    b = capturer.capture(ns["first"], ns=ns)
    assert len(store.puts) == 1
    req1 = call(a)
    assert len(store.puts) == 1
    ns["BIG"] = ns["BIG"] * 2
    req2 = call(a)
    assert len(store.puts) == 2
    ctx = context_bytes(a.execution_object)
    assert len(ctx) < 100_000 and len(req1) < 100_000
    result = run_on_executor(ctx, [req1, req2], store_dir=store.root, workdir=tmp_path)
    assert values(result) == [float(3 * (1 << 20) // 8), float(2 * 3 * (1 << 20) // 8)]
    assert len([k for k in result["fetches"] if k.startswith("fjtest/objects/")]) == 2
    assert b.state["refs"] == {d: r for d, r in a.state["refs"].items()}


def test_cell_capture_runs_cell_and_returns_outputs(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook("import math\nBASE = 3\ndef sq(x):\n    return x * x\n")
    source = "values = [sq(i) + BASE for i in range(4)]\ntotal = sum(values)\nmath.sqrt(total)\n"
    captured = capturer.capture_cell(source, ns, outputs=["total", "values"])
    assert set(captured.names) == {"sq", "BASE", "math"}
    result = run_on_executor(
        context_bytes(captured.execution_object), [call(captured)], store_dir=store.root, workdir=tmp_path
    )
    [out] = values(result)
    assert out == {"value": 26**0.5, "outputs": {"total": 26, "values": [3, 4, 7, 12]}}


def test_cell_with_undefined_names_is_rejected(capturer: Capturer) -> None:
    ns = notebook("a = 1\n")
    with pytest.raises(CaptureError) as info:
        capturer.capture_cell("b = a + missing_one\nc = b + 1\nprint(other)\n", ns)
    assert "names not defined in the notebook: missing_one, other" in str(info.value)


@pytest.mark.parametrize(
    ("setup", "chain", "type_name", "reason"),
    [
        (
            "import threading\nLOCK = threading.Lock()\n",
            "run -> LOCK",
            "threading.Lock",
            "locks only coordinate",
        ),
        ("import socket\nSOCK = socket.socket()\n", "run -> SOCK", "socket.socket", "network connections"),
        ("FH = open(__file__ if False else '/dev/null')\n", "run -> FH", "io.TextIOWrapper", "open files"),
        (
            "import sqlite3\nDB = sqlite3.connect(':memory:')\n",
            "run -> DB",
            "sqlite3.Connection",
            "database connections",
        ),
        ("GEN = (i for i in range(3))\n", "run -> GEN", "generator", "generators cannot"),
    ],
)
def test_unpicklable_global_names_variable_type_and_chain(
    setup: str, chain: str, type_name: str, reason: str, capturer: Capturer, store: Any
) -> None:
    name = chain.split(" -> ")[-1]
    ns = notebook(setup, f"def run():\n    return {name}\n")
    with pytest.raises(CaptureError) as info:
        capturer.capture(ns["run"], ns=ns)
    msg = str(info.value)
    assert msg.startswith(f"cannot capture {name!r} ({type_name}), reached via {chain}: {reason}")
    assert msg.endswith("Nothing was sent.")
    assert info.value.chain == tuple(chain.split(" -> "))
    assert store.puts == []
    if hasattr(ns[name], "close"):
        ns[name].close()


def test_chain_through_module_level_object(capturer: Capturer, store: Any) -> None:
    np = pytest.importorskip("numpy")
    ns = notebook(
        """
        import sqlite3
        class Registry:
            def __init__(self):
                self.conn = sqlite3.connect(":memory:")
                self.rows = []
        DB = Registry()
        def fetch(q):
            return DB.conn.execute(q).fetchall()
        def load_rows():
            return fetch("select 1") + [WEIGHTS.sum()]
        """
    )
    ns["WEIGHTS"] = np.ones(1 << 18)  # 2 MiB: would go to the store if capture succeeded
    with pytest.raises(CaptureError) as info:
        capturer.capture(ns["load_rows"], ns=ns)
    assert str(info.value).startswith(
        "cannot capture 'conn' (sqlite3.Connection), reached via load_rows -> fetch -> DB -> conn: database connections"
    )
    assert info.value.name == "conn"
    assert info.value.type_name == "sqlite3.Connection"
    assert store.puts == []
    ns["DB"].conn.close()


def test_unpicklable_object_without_known_type(capturer: Capturer) -> None:
    ns = notebook(
        """
        class Handle:
            def __reduce__(self):
                raise TypeError("cannot pickle 'Handle' object")
        class Holder:
            def __init__(self):
                self.items = {"h": Handle()}
        HOLDER = Holder()
        def use():
            return HOLDER
        """
    )
    with pytest.raises(CaptureError) as info:
        capturer.capture(ns["use"], ns=ns)
    assert str(info.value).startswith(
        "cannot capture \"['h']\" (__main__.Handle), reached via use -> HOLDER -> items -> ['h']: "
        "it cannot be pickled (TypeError: cannot pickle 'Handle' object)"
    )


def test_lock_in_closure_and_instance(capturer: Capturer) -> None:
    lock = threading.Lock()

    def make():
        def inner():
            with lock:
                return 1

        return inner

    ns = notebook("class Box:\n    pass\n")
    with pytest.raises(CaptureError, match=r"reached via inner -> lock: locks only"):
        capturer.capture(make(), ns=ns)
    box = ns["Box"]()
    box.guard = threading.RLock()
    with pytest.raises(
        CaptureError, match=r"cannot capture 'guard' \(threading.RLock\), reached via box -> guard"
    ):
        capturer.capture(box, ns=ns, name="box")


def test_socket_and_sqlite_are_blocked_even_if_dill_could(capturer: Capturer) -> None:
    sock = socket.socket()
    conn = sqlite3.connect(":memory:")
    try:
        ns = notebook("def f():\n    return S, C\n")
        ns.update(S=sock, C=conn)
        with pytest.raises(CaptureError, match="network connections"):
            capturer.capture(ns["f"], ns=ns)
    finally:
        sock.close()
        conn.close()


def test_memory_store_roundtrip_in_process() -> None:
    store = MemoryObjectStore()
    capturer = Capturer(store=store, threshold=1024)
    ns = notebook("def size():\n    return len(BLOB)\n")
    ns["BLOB"] = b"x" * 5000
    captured = capturer.capture(ns["size"], ns=ns)
    assert len(store.puts) == 1
    [ref] = captured.state["refs"].values()
    assert store.get(ref)[:2] == b"\x80\x05"


@pytest.mark.skipif(
    not os.environ.get("FLAME_JUPYTER_SKEW_PYTHON"),
    reason="set FLAME_JUPYTER_SKEW_PYTHON to a python of another minor version with flamepy+dill installed",
)
def test_real_python_version_skew(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    """A payload from this kernel, loaded by runpy under another Python: the clear error."""
    ns = notebook("class C:\n    def m(self):\n        return 1\ndef f():\n    return 1\n")
    for i, obj in enumerate((ns["f"], ns["C"], ns["C"]())):
        captured = capturer.capture(obj, ns=ns)
        method = None if captured.kind == "function" else "m"
        result = run_on_executor(
            context_bytes(captured.execution_object),
            [call(captured, method=method)],
            store_dir=store.root,
            workdir=tmp_path / str(i),
            python=os.environ["FLAME_JUPYTER_SKEW_PYTHON"],
        )
        assert result["enter_error"] is None
        err = result["results"][0]
        assert err["type"] == "builtins.RuntimeError", err
        major, minor = sys.version_info[:2]
        assert err["message"].startswith(f"flame_jupyter payload was made with Python {major}.{minor}")
        print(err["message"])


def test_missing_package_on_executor_is_explained(capturer: Capturer, store: Any, tmp_path: Path) -> None:
    ns = notebook("import numpy as np\ndef f():\n    return int(np.ones(2).sum())\n")
    captured = capturer.capture(ns["f"], ns=ns)
    requests = [call(captured)]
    ctx = context_bytes(captured.execution_object)
    result = run_on_executor(ctx, requests, store_dir=store.root, workdir=tmp_path, block=("numpy",))
    err = result["results"][0]
    assert err["type"] == "builtins.RuntimeError"
    assert err["message"].startswith("flame_jupyter: cannot load notebook global 'np' on this executor: ")
    assert "numpy" in err["message"] and err["message"].endswith("(install it on the executors)")


def test_a_captured_instance_still_serves_plain_flamepy_as_a_stateful_instance(tmp_path: Path) -> None:
    """``captured.execution_object`` (the capture API, used with plain flamepy's Runner) is an
    instance with methods, stateful through runpy's save and reload; flame_jupyter's own
    services serve ``captured.live_object``, a callable kept live in its instance."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(COUNTER + "\ncounter = Counter(10)\n", ns)
    captured = Capturer(store=MemoryObjectStore()).capture(ns["counter"], ns=ns)
    plain = RunnerContext(execution_object=captured.execution_object)
    assert (plain.stateful, callable(captured.execution_object)) == (True, False)
    assert "add" in dir(captured.execution_object) and callable(captured.live_object)
