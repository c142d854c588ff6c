"""Capture engine unit tests (no kernel, no executor process)."""

from __future__ import annotations

import ast
import asyncio
import importlib
import pickle
import pickletools
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from flamepy.runner.types import RunnerContext, SessionContext

import flame_jupyter.remote as remote
from flame_jupyter.capture import ENV_KWARG, CaptureError, Capturer, MemoryObjectStore
from flame_jupyter.capture.errors import find_path
from flame_jupyter.capture.modules import files_digest, local_top, module_files
from flame_jupyter.capture.names import cell_free_names, code_global_names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_remote_runpy import notebook, run_cell  # noqa: E402


def roundtrip(captured: Any) -> Any:
    """What the executor gets: flamepy's cloudpickled RunnerContext, loaded again."""
    data = cloudpickle.dumps(RunnerContext(execution_object=captured.execution_object))
    return cloudpickle.loads(data).execution_object


def invoke(captured: Any, target: Any, *args: Any, method: str | None = None, **kwargs: Any) -> Any:
    a, kw = captured.prepare_call(args, kwargs)
    return target(*a, **kw) if method is None else getattr(target, method)(*a, **kw)


@pytest.fixture
def capturer() -> Capturer:
    return Capturer(store=MemoryObjectStore(), threshold=1 << 20)


# --------------------------------------------------------------------------- names


def test_code_global_names_sees_nested_code_and_stores() -> None:
    ns = notebook(
        """
        def f(x):
            global COUNT
            COUNT = 1
            def inner():
                return helper(x) + [v * K for v in x]
            class Local:
                attr = CLASS_LEVEL
            return inner, Local, x.attribute_not_global
        """
    )
    assert code_global_names(ns["f"].__code__) == ("COUNT", "helper", "K", "__name__", "CLASS_LEVEL")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("y = x + 1\nprint(y)", ["x", "print"]),
        ("x = 1\ny = x + z", ["z"]),
        ("total += 1", ["total"]),
        ("n = 0\nn += step", ["step"]),
        ("out = [i * k for i in items if i > lo]", ["items", "k", "lo"]),
        ("if (m := compute()):\n    r = m + 1", ["compute"]),
        ("def f():\n    return later()\ndef later():\n    return G\n", ["G"]),
        ("class C(Base):\n    a = A\n    def m(self):\n        return self.a + B", ["Base", "A", "B"]),
        ("import numpy as np\nfrom math import sqrt as s\nnp.ones(3) + s(2)", []),
        ("try:\n    pass\nexcept Exception as e:\n    print(e)", ["Exception", "print"]),
        ("with open(p) as fh:\n    data = fh.read()\ndata", ["open", "p"]),
        ("for a, b in pairs:\n    acc = a + b\nacc", ["pairs"]),
        ("r = await fetch(u)\nr", ["fetch", "u"]),
        (
            "match cmd:\n    case Point(x=0) as p:\n        q = p\n    case _:\n        q = other",
            ["cmd", "Point", "other"],
        ),
        ("f = lambda v, d=D: v + E\nf(1)", ["D", "E"]),
    ],
)
def test_cell_free_names(source: str, expected: list[str]) -> None:
    assert sorted(cell_free_names(source)) == sorted(expected)


# --------------------------------------------------------------------------- modules


def test_local_module_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fjlocalpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .sub import VALUE\n")
    (pkg / "sub.py").write_text("VALUE = 5\n")
    (tmp_path / "fjlocalmod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("fjlocalpkg")
    importlib.import_module("fjlocalmod")
    try:
        assert local_top("fjlocalpkg.sub") == "fjlocalpkg"
        assert local_top("fjlocalmod") == "fjlocalmod"
        for installed in ("json", "numpy", "cloudpickle", "flame_jupyter.capture", "flamepy.core", "_thread"):
            assert local_top(installed) is None, installed
        files = module_files("fjlocalpkg")
        assert sorted(files) == ["fjlocalpkg/__init__.py", "fjlocalpkg/sub.py"]
        assert module_files("fjlocalmod") == {"fjlocalmod.py": b"X = 1\n"}
        assert files_digest(files) == files_digest(dict(reversed(list(files.items()))))
    finally:
        for name in ("fjlocalpkg", "fjlocalpkg.sub", "fjlocalmod"):
            sys.modules.pop(name, None)
        local_top.cache_clear()


def test_remote_package_imports_only_stdlib_and_serializers() -> None:
    package = Path(remote.__file__).parent
    files = sorted(p.stem for p in package.glob("*.py"))
    assert files == sorted(remote.bootstrap.MODULES), "every module of the package must travel"
    allowed = set(sys.stdlib_module_names) | {"cloudpickle", "dill", "flamepy", "pyarrow", "__future__"}
    for module in remote.bootstrap.MODULES:
        tree = ast.parse((package / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # a sibling module: one that travels too
                    assert node.level == 1 and (node.module or "") in ("", *remote.bootstrap.MODULES), module
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.partition(".")[0] in allowed, (module, name)


# --------------------------------------------------------------------------- payload format


def _pickle_strings(data: bytes) -> list[str]:
    return [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]


@pytest.mark.parametrize("which", ["function", "class", "instance"])
def test_context_ships_source_not_bytecode(capturer: Capturer, which: str) -> None:
    ns = notebook("class A:\n    def m(self):\n        return 1\ndef f():\n    return A().m()\na = A()\n")
    obj = {"function": ns["f"], "class": ns["A"], "instance": ns["a"]}[which]
    captured = capturer.capture(obj, ns=ns)
    data = cloudpickle.dumps(RunnerContext(execution_object=captured.execution_object))
    strings = _pickle_strings(data)
    assert not [s for s in strings if s in ("_make_function", "_create_code", "CodeType", "_create_function")]
    assert data.count(remote._source_blob()) == 1  # the package's sources travel once


def test_shipped_package_frames_name_their_module_and_lines(capturer: Capturer) -> None:
    ns = notebook("def f(x):\n    return 1 / x\n")
    shipped = cloudpickle.loads(cloudpickle.dumps(capturer.capture(ns["f"], ns=ns).execution_object))
    assert type(shipped).__module__.startswith("_flame_jupyter_remote_")  # the bootstrapped copy
    with pytest.raises(ZeroDivisionError) as info:
        shipped(0)
    frames = {(fr.filename, fr.name): fr.line for fr in traceback.extract_tb(info.value.__traceback__)}
    assert frames[("<flame_jupyter.remote.execution>", "run_call")] == "result = fn(*args, **kwargs)"
    assert "1 / x" in [line for (_file, name), line in frames.items() if name == "f"][0]


def test_check_versions() -> None:
    header = remote.make_header()
    remote.check_versions(header)
    with pytest.raises(RuntimeError, match="format 99"):
        remote.check_versions(dict(header, format=99))
    patched = dict(header, python="2.7.18")
    with pytest.raises(
        RuntimeError, match=r"made with Python 2\.7 / dill .* but this executor has Python 3\.\d+"
    ):
        remote.check_versions(patched)
    remote.check_versions(dict(header, dill=header["dill"].rsplit(".", 1)[0] + ".999"))  # patch skew is fine


# --------------------------------------------------------------------------- calls in process


def test_callable_kinds(capturer: Capturer) -> None:
    ns = notebook(
        """
        import functools
        class Doubler:
            def __call__(self, x):
                return 2 * x
            def other(self):
                return 0
        doubler = Doubler()
        def add(a, b):
            return a + b
        inc = functools.partial(add, 1)
        class Thing:
            def m(self):
                return "m"
        thing = Thing()
        """
    )
    assert capturer.capture(ns["doubler"], ns=ns).kind == "function"  # flamepy: callable -> function
    assert capturer.capture(ns["inc"], ns=ns).kind == "function"
    assert capturer.capture(ns["Thing"], ns=ns).kind == "class"
    assert capturer.capture(ns["thing"], ns=ns).kind == "instance"
    cap = capturer.capture(ns["inc"], ns=ns)
    assert invoke(cap, roundtrip(cap), 41) == 42
    assert cap.name == "inc"
    cap = capturer.capture(ns["doubler"], ns=ns)
    assert invoke(cap, roundtrip(cap), 21) == 42


def test_async_function_and_top_level_await_cell(capturer: Capturer) -> None:
    ns = notebook(
        """
        import asyncio
        async def slow_add(a, b):
            await asyncio.sleep(0)
            return a + b
        """
    )
    cap = capturer.capture(ns["slow_add"], ns=ns)
    assert invoke(cap, roundtrip(cap), 1, 2) == 3
    cell = capturer.capture_cell("x = await slow_add(2, 3)\nx * 10\n", ns, outputs=["x"])
    assert invoke(cell, roundtrip(cell)) == {"value": 50, "outputs": {"x": 5}}

    async def inside_loop() -> Any:  # run_call also works when a loop is already running
        return invoke(cap, roundtrip(cap), 5, 6)

    assert asyncio.run(inside_loop()) == 11


def test_deleted_global_is_not_kept_remotely(capturer: Capturer) -> None:
    ns = notebook("K = 1\ndef f():\n    return K\n")
    cap = capturer.capture(ns["f"], ns=ns)
    target = roundtrip(cap)
    assert invoke(cap, target) == 1
    del ns["K"]
    with pytest.raises(NameError, match="'K' is not defined"):
        invoke(cap, target)


def test_globals_rebound_remotely_are_shared_by_all_functions(capturer: Capturer) -> None:
    ns = notebook(
        """
        STATE = "initial"
        def setter(v):
            global STATE
            STATE = v
            return reader()
        def reader():
            return STATE
        """
    )
    cap = capturer.capture(ns["setter"], ns=ns)
    assert invoke(cap, roundtrip(cap), "changed") == "changed"


def test_prepare_call_encodes_notebook_objects_only(capturer: Capturer) -> None:
    ns = notebook(
        """
        class Point:
            def __init__(self, x):
                self.x = x
        def norm(p, scale=1):
            return (isinstance(p, Point), p.x * scale)
        """
    )
    cap = capturer.capture(ns["norm"], ns=ns)
    args, kwargs = cap.prepare_call((ns["Point"](3),), {"scale": 2})
    assert args[0][0] == remote.ARG_TAG
    assert kwargs["scale"] == 2 and ENV_KWARG in kwargs
    assert roundtrip(cap)(*args, **kwargs) == (True, 6)
    with pytest.raises(TypeError, match="reserved"):
        cap.prepare_call((), {ENV_KWARG: 1})
    frozen = capturer.capture(ns["norm"], ns=ns, snapshot=True)
    assert frozen.env() is None
    assert ENV_KWARG not in frozen.prepare_call((1,), {})[1]


def test_unpicklable_argument_is_a_capture_error(capturer: Capturer) -> None:
    import threading

    ns = notebook("class Holder:\n    pass\ndef f(x):\n    return x\n")
    cap = capturer.capture(ns["f"], ns=ns)
    holder = ns["Holder"]()
    holder.lock = threading.Lock()
    with pytest.raises(
        CaptureError, match=r"cannot capture 'lock' \(threading.Lock\), reached via argument 0 -> lock"
    ):
        cap.prepare_call((holder,), {})


def test_stateful_instance_state_survives_pickling_in_process(capturer: Capturer) -> None:
    ns = notebook(
        """
        class Acc:
            def __init__(self):
                self.items = []
            def push(self, v):
                self.items.append(v * FACTOR)
                return list(self.items)
        FACTOR = 10
        acc = Acc()
        """
    )
    cap = capturer.capture(ns["acc"], ns=ns)
    first = roundtrip(cap)
    assert invoke(cap, first, 1, method="push") == [10]
    second = cloudpickle.loads(cloudpickle.dumps(RunnerContext(execution_object=first))).execution_object
    ns["FACTOR"] = 100
    assert invoke(cap, second, 2, method="push") == [10, 200]
    assert ns["acc"].items == []  # the notebook's object is untouched


def test_session_context_is_passed_to_flamepy(capturer: Capturer) -> None:
    ns = notebook("def f():\n    return 1\nclass S:\n    def m(self):\n        return 2\n")
    ns["f"]._session_context = SessionContext(session_id="fn-session")
    ns["S"]._session_context = SessionContext(session_id="cls-session")
    assert capturer.capture(ns["f"], ns=ns).execution_object._session_context.session_id == "fn-session"
    assert capturer.capture(ns["S"], ns=ns).execution_object._session_context.session_id == "cls-session"


def test_large_values_of_several_kinds(capturer: Capturer) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    store = capturer.store
    ns = notebook(
        "def summary():\n    return [len(BLOB), float(FRAME['a'].sum()), float(NESTED['w'].sum()), len(SMALL)]\n"
    )
    ns["BLOB"] = b"\x01" * (2 << 20)
    ns["FRAME"] = pd.DataFrame({"a": np.ones(300_000)})
    ns["NESTED"] = {"w": np.ones(300_000), "name": "nested"}
    ns["SMALL"] = list(range(10))
    cap = capturer.capture(ns["summary"], ns=ns)
    assert len(store.puts) == 3
    assert invoke(cap, roundtrip(cap)) == [2 << 20, 300_000.0, 300_000.0, 10]
    cap.prepare_call()
    assert len(store.puts) == 3
    ns["NESTED"]["w"][0] = 2.0
    cap.prepare_call()
    assert len(store.puts) == 4


def test_no_store_means_everything_inline() -> None:
    np = pytest.importorskip("numpy")
    ns = notebook("def f():\n    return float(ARR.sum())\n")
    ns["ARR"] = np.ones(300_000)
    cap = Capturer(store=None).capture(ns["f"], ns=ns)
    assert cap.state["refs"] == {}
    assert invoke(cap, roundtrip(cap)) == 300_000.0


def test_capture_emits_no_warnings(capturer: Capturer) -> None:
    ns = notebook(
        "import enum, dataclasses, typing\nclass E(enum.Enum):\n    A = 1\n"
        "@dataclasses.dataclass\nclass D:\n    x: int = 0\n"
        "class N(typing.NamedTuple):\n    a: int\n"
        "def f():\n    return E.A, D(), N(1)\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cap = capturer.capture(ns["f"], ns=ns)
        e, d, n = invoke(cap, roundtrip(cap))
    assert (e.name, d.x, n.a) == ("A", 0, 1)


def test_find_path_labels() -> None:
    target = object()

    class Holder:
        pass

    h = Holder()
    h.cfg = {"db": [1, target]}
    assert find_path(h, target) == ["cfg", "['db']", "[1]"]
    assert find_path(h, object()) is None


def test_redefined_function_used_by_later_calls(capturer: Capturer) -> None:
    ns = notebook("def helper():\n    return 'v1'\ndef main():\n    return helper()\n")
    cap = capturer.capture(ns["main"], ns=ns)
    target = roundtrip(cap)
    assert invoke(cap, target) == "v1"
    run_cell(ns, "def helper():\n    return 'v2'\n", 1)
    assert invoke(cap, target) == "v2"


def test_pickle_protocol_of_bodies(capturer: Capturer) -> None:
    ns = notebook("def f():\n    return 1\n")
    cap = capturer.capture(ns["f"], ns=ns)
    assert cap.state["body"][:2] == b"\x80" + bytes([pickle.HIGHEST_PROTOCOL])


def test_function_with_foreign_globals_takes_only_what_it_uses(capturer: Capturer) -> None:
    import threading

    foreign = {"__name__": "somewhere", "LOCK": threading.Lock(), "N": 4}
    exec("def g(x):\n    return x * N\n", foreign)
    ns = notebook("def f(x):\n    return G(x) + 1\n")
    ns["G"] = foreign["g"]
    cap = capturer.capture(ns["f"], ns=ns)
    assert invoke(cap, roundtrip(cap), 2) == 9
