"""Capture in a real IPython kernel; run the payload with the stock runpy service elsewhere.

Cells define notebook code in ``__main__``; a cell captures it and writes the session context
and task inputs exactly as flamepy builds them; a separate interpreter that cannot import
flame_jupyter or IPython runs them through ``FlameRunpyService`` (see test_remote_runpy).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernel_helpers import KernelSession  # noqa: E402
from test_remote_runpy import DIR_STORE_SOURCE, run_on_executor, values  # noqa: E402

SETUP = """
import cloudpickle as _fj_cp
from flamepy.runner.types import RunnerContext as _FjCtx, RunnerRequest as _FjReq
from flame_jupyter.capture import Capturer as _FjCapturer, CaptureError
exec({store_source!r})
_FJ_STORE = DirStore({store!r})
del DirStore
_FJ = _FjCapturer(store=_FJ_STORE, threshold=1 << 20)

def _fj_req(captured, *args, method=None, **kwargs):
    a, k = captured.prepare_call(args, kwargs)
    req = _FjReq(method=method, args=a if a else None, kwargs=k if k else None)
    return _fj_cp.dumps(req, protocol=_fj_cp.DEFAULT_PROTOCOL)

def _fj_plan(name, captured, requests):
    ctx = _fj_cp.dumps(_FjCtx(execution_object=captured.execution_object), protocol=_fj_cp.DEFAULT_PROTOCOL)
    with open({plans!r} + "/" + name + ".pkl", "wb") as fh:
        fh.write(_fj_cp.dumps({{"context": ctx, "requests": list(requests)}}))
"""


class Notebook:
    """A kernel plus the directories the tests exchange plans and stored values through."""

    def __init__(self, kernel: KernelSession, root: Path) -> None:
        self.kernel = kernel
        self.root = root
        self.store = root / "store"
        self.plans = root / "plans"

    def cell(self, code: str) -> str:
        return self.kernel.run(textwrap.dedent(code)).stdout

    def error(self, code: str) -> dict[str, Any]:
        res = self.kernel.execute(textwrap.dedent(code))
        assert res.error is not None, "cell did not fail"
        return res.error

    def execute_plan(self, name: str, workdir: Path) -> dict[str, Any]:
        plan = cloudpickle.loads((self.plans / f"{name}.pkl").read_bytes())
        return run_on_executor(plan["context"], plan["requests"], store_dir=self.store, workdir=workdir)

    def run(self, name: str, setup_code: str, workdir: Path) -> list[Any]:
        self.cell(setup_code)
        return values(self.execute_plan(name, workdir))

    def puts(self) -> int:
        return self.kernel.value("len(_FJ_STORE.puts)")


@pytest.fixture(scope="module")
def nb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("notebook")
    (root / "nbdir").mkdir()
    (root / "plans").mkdir()
    (root / "store").mkdir()
    kernel = KernelSession(cwd=root / "nbdir")
    kernel.start()
    try:
        notebook = Notebook(kernel, root)
        notebook.cell(
            SETUP.format(store_source=DIR_STORE_SOURCE, store=str(root / "store"), plans=str(root / "plans"))
        )
        yield notebook
    finally:
        kernel.shutdown()


def test_functions_recursion_closures_lambdas_partials_decorators(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        import functools
        OFFSET = 100
        def double(x):
            return 2 * x
        def score(x):
            return double(x) + OFFSET
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)
        def make_adder(k):
            def add(x):
                return x + k + OFFSET
            return add
        add5 = make_adder(5)
        square = lambda x: double(x) * x / 2
        def power(base, exp):
            return base ** exp
        cube = functools.partial(power, exp=3)
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return ("logged", fn(*args, **kwargs))
            return wrapper
        @logged
        def hello(name):
            return "hello " + name
        """
    )
    cases = {
        "score": ("score", (1,), 102),
        "fact": ("fact", (6,), 720),
        "add5": ("add5", (1,), 106),
        "square": ("square", (7,), 49.0),
        "cube": ("cube", (3,), 27),
        "hello": ("hello", ("flame",), ("logged", "hello flame")),
    }
    for name, (var, args, expected) in cases.items():
        got = nb.run(
            name,
            f"_fj_plan({name!r}, _FJ.capture({var}), [_fj_req(_FJ.capture({var}), *{args!r})])",
            tmp_path / name,
        )
        assert got == [expected], name
    assert nb.kernel.value("_FJ.capture(hello).name") == "hello"
    assert nb.kernel.value("sorted(_FJ.capture(score).names)") == ["OFFSET", "double"]


def test_classes_dataclasses_enums_namedtuples(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        import dataclasses, enum, typing
        class Shape:
            sides = 0
            def describe(self):
                return f"{type(self).__name__} with {self.sides} sides"
        class Square(Shape):
            sides = 4
            def __init__(self, size=2):
                self.size = size
            @property
            def area(self):
                return self.size ** 2
            @classmethod
            def unit(cls):
                return cls(1)
            @staticmethod
            def name():
                return "square"
            def describe(self):
                return super().describe() + f", area {self.area}"
        @dataclasses.dataclass
        class Order:
            item: str
            qty: int = 1
            tags: list = dataclasses.field(default_factory=list)
            def total(self, price):
                return self.qty * price
        class Color(enum.Enum):
            RED = "r"
            GREEN = "g"
        class Pair(typing.NamedTuple):
            a: int
            b: int = 10
            def total(self):
                return self.a + self.b
        def use_types():
            sq = Square.unit()
            order = Order("apple", 3)
            return [
                sq.describe(), sq.area, Square.name(), isinstance(sq, Shape),
                order.total(2), [f.name for f in dataclasses.fields(Order)], dataclasses.asdict(order),
                Color("g").name, Color.RED is Color["RED"], list(Color) == [Color.RED, Color.GREEN],
                Pair(1).total(), Pair(1, 2)._asdict(),
            ]
        """
    )
    got = nb.run(
        "types", "_fj_plan('types', _FJ.capture(use_types), [_fj_req(_FJ.capture(use_types))])", tmp_path
    )
    assert got == [
        [
            "Square with 4 sides, area 1",
            1,
            "square",
            True,
            6,
            ["item", "qty", "tags"],
            {"item": "apple", "qty": 3, "tags": []},
            "GREEN",
            True,
            True,
            11,
            {"a": 1, "b": 2},
        ]
    ]
    # a notebook class as a (stateless) class service
    got = nb.run(
        "square_svc",
        """
        _c = _FJ.capture(Square)
        _fj_plan('square_svc', _c, [_fj_req(_c, method='describe'), _fj_req(_c, method='unit'), _fj_req(_c, method='name')])
        """,
        tmp_path / "svc",
    )
    assert got[0] == "Square with 4 sides, area 4"
    assert type(got[1]).__name__ == "Square" and got[1].size == 1
    assert got[2] == "square"


def test_stateful_instance_and_redefined_class(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        class Counter:
            def __init__(self, start):
                self.n = start
            def add(self, k):
                self.n += k
                return self.n
        counter = Counter(10)
        """
    )
    nb.cell(
        """
        class Counter:  # redefined: the old instance keeps its class
            def __init__(self, start):
                self.n = start * 1000
            def add(self, k):
                return "new class"
        """
    )
    got = nb.run(
        "counter",
        """
        _c = _FJ.capture(counter)
        assert sorted(n for n in dir(_c.execution_object) if not n.startswith('_')) == ['add']
        _fj_plan('counter', _c, [_fj_req(_c, 1, method='add'), _fj_req(_c, 3, method='add')])
        """,
        tmp_path / "old",
    )
    assert got == [11, 14]
    got = nb.run(
        "counter_new",
        """
        _c = _FJ.capture(Counter(1))
        _fj_plan('counter_new', _c, [_fj_req(_c, 1, method='add')])
        """,
        tmp_path / "new",
    )
    assert got == ["new class"]


def test_global_changes_between_calls(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        RATE = 2
        def apply_rate(x):
            return x * RATE
        _fresh = _FJ.capture(apply_rate)
        _frozen = _FJ.capture(apply_rate, snapshot=True)
        _reqs = {'fresh': [_fj_req(_fresh, 5)], 'frozen': [_fj_req(_frozen, 5)]}
        RATE = 3
        _reqs['fresh'].append(_fj_req(_fresh, 5))
        _reqs['frozen'].append(_fj_req(_frozen, 5))
        _fj_plan('fresh', _fresh, _reqs['fresh'])
        _fj_plan('frozen', _frozen, _reqs['frozen'])
        """
    )
    assert values(nb.execute_plan("fresh", tmp_path / "fresh")) == [10, 15]
    assert values(nb.execute_plan("frozen", tmp_path / "frozen")) == [10, 10]


def test_module_aliases_and_imported_names(nb: Notebook, tmp_path: Path) -> None:
    got = nb.run(
        "aliases",
        """
        import numpy as np
        import os.path as osp
        from math import sqrt
        def stats(n):
            arr = np.arange(n, dtype=float)
            return [float(arr.mean()), sqrt(16.0), osp.join("a", "b")]
        _fj_plan('aliases', _FJ.capture(stats), [_fj_req(_FJ.capture(stats), 5)])
        """,
        tmp_path,
    )
    assert got == [[2.0, 4.0, "a/b"]]


def test_helper_module_next_to_notebook_travels_by_value(nb: Notebook, tmp_path: Path) -> None:
    helper = nb.root / "nbdir" / "nbhelper_xyz.py"
    helper.write_text(
        textwrap.dedent(
            """
            FACTOR = 7

            class Tool:
                def __init__(self, k):
                    self.k = k

                def run(self, x):
                    return x * self.k * FACTOR

            def helper(x):
                if x < 0:
                    raise KeyError("no negatives in helper")
                return x * FACTOR
            """
        )
    )
    nb.cell(
        """
        import nbhelper_xyz
        from nbhelper_xyz import Tool, helper
        TOOL = Tool(2)
        def use_helper(x):
            return [helper(x), nbhelper_xyz.FACTOR, TOOL.run(x)]
        _c = _FJ.capture(use_helper)
        _fj_plan('helper', _c, [_fj_req(_c, 3), _fj_req(_c, Tool(10).run(1) // 70), _fj_req(_c, -1)])
        _fj_plan('helper_arg', _FJ.capture(lambda tool: tool.run(1)), [_fj_req(_FJ.capture(lambda tool: tool.run(1)), Tool(3))])
        """
    )
    result = nb.execute_plan("helper", tmp_path / "a")
    assert str(nb.root / "nbdir") not in result["path"]
    assert result["cwd"] != str(nb.root / "nbdir")
    assert [r["ok"] for r in result["results"]] == [True, True, False]
    assert cloudpickle.loads(result["results"][0]["value"]) == [21, 7, 42]
    assert "KeyError" in result["results"][2]["type"]
    assert 'raise KeyError("no negatives in helper")' in result["results"][2]["traceback"]
    assert values(nb.execute_plan("helper_arg", tmp_path / "b")) == [21]


def test_large_value_goes_to_store_once(nb: Notebook, tmp_path: Path) -> None:
    before = nb.puts()
    nb.cell(
        """
        import numpy as np
        BIG = np.arange(20 * 2**20 // 8, dtype=np.float64)   # 20 MiB
        def big_sum():
            return float(BIG.sum())
        def big_first(i):
            return float(BIG[i])
        _a = _FJ.capture(big_sum)
        _b = _FJ.capture(big_first)
        _reqs = [_fj_req(_a)]
        """
    )
    assert nb.puts() == before + 1
    nb.cell("BIG[0] = 5.0\n_reqs.append(_fj_req(_a))\n_fj_plan('big', _a, _reqs)")
    assert nb.puts() == before + 2
    assert nb.kernel.value("len(_fj_cp.dumps(_reqs))") < 200_000
    n = 20 * 2**20 // 8
    result = nb.execute_plan("big", tmp_path)
    expected = float(n * (n - 1) // 2)
    assert values(result) == [expected, expected + 5.0]


@pytest.mark.parametrize(
    ("fn", "setup", "expected"),
    [
        (
            "guarded",
            "import threading\nLOCK = threading.Lock()\ndef guarded():\n    with LOCK:\n        return HUGE[0]\n",
            "cannot capture 'LOCK' (threading.Lock), reached via guarded -> LOCK: locks only coordinate threads inside one process",
        ),
        (
            "send",
            "import socket\nSOCK = socket.socket()\ndef send():\n    return SOCK.send(HUGE[:1].tobytes())\n",
            "cannot capture 'SOCK' (socket.socket), reached via send -> SOCK: network connections cannot be sent to another process",
        ),
        (
            "log",
            "LOG = open('notes.txt', 'w')\ndef log(msg):\n    LOG.write(msg + str(HUGE[0]))\n",
            "cannot capture 'LOG' (io.TextIOWrapper), reached via log -> LOG: open files cannot be sent to another process",
        ),
        (
            "query",
            "import sqlite3\nCONN = sqlite3.connect(':memory:')\ndef query():\n    return CONN.execute('select 1').fetchall(), HUGE\n",
            "cannot capture 'CONN' (sqlite3.Connection), reached via query -> CONN: database connections cannot be sent",
        ),
        (
            "first",
            "ROWS = (i * i for i in range(10))\ndef first():\n    return next(ROWS) + HUGE[0]\n",
            "cannot capture 'ROWS' (generator), reached via first -> ROWS: generators cannot be sent to another process",
        ),
        (
            "load_rows",
            "import sqlite3\nclass Db:\n    def __init__(self):\n        self.conn = sqlite3.connect(':memory:')\n"
            "DB = Db()\ndef fetch(q):\n    return DB.conn.execute(q).fetchall()\n"
            "def load_rows():\n    return fetch('select 1') + [HUGE.sum()]\n",
            "cannot capture 'conn' (sqlite3.Connection), reached via load_rows -> fetch -> DB -> conn: database connections",
        ),
    ],
)
def test_unpicklable_globals(nb: Notebook, fn: str, setup: str, expected: str) -> None:
    before = nb.puts()
    nb.cell(
        "import numpy as np\nHUGE = np.ones(2**21)  # 16 MiB: would be stored if capture succeeded\n" + setup
    )
    err = nb.error(f"_FJ.capture({fn})")
    assert err["ename"] == "CaptureError"
    assert err["evalue"].startswith(expected), err["evalue"]
    assert err["evalue"].endswith("Nothing was sent.")
    assert nb.puts() == before


def test_version_skew_forged_header(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        def answer():
            return 42
        _c = _FJ.capture(answer)
        _c.state['header'].update(python='3.99.0', dill='9.9.9')
        _fj_plan('skew', _c, [_fj_req(_c)])
        """
    )
    result = nb.execute_plan("skew", tmp_path)
    err = result["results"][0]
    assert err["type"] == "builtins.RuntimeError"
    assert err["message"].startswith("flame_jupyter payload was made with Python 3.99 / dill 9.9.9")
    major, minor = sys.version_info[:2]
    assert f"but this executor has Python {major}.{minor}" in err["message"]


def test_remote_exception_shows_cell_lines(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        def parse_age(text):
            age = int(text)
            if age < 0:
                raise ValueError(f"age must be positive, got {age}")
            return age
        def load(texts):
            return [parse_age(t) for t in texts]
        _fj_plan('exc', _FJ.capture(load), [_fj_req(_FJ.capture(load), ['3', '-4'])])
        """
    )
    result = nb.execute_plan("exc", tmp_path)
    err = result["results"][0]
    assert err["type"] == "builtins.ValueError"
    assert err["message"] == "age must be positive, got -4"
    tb = err["traceback"]
    assert "/ipykernel_" in tb
    assert 'raise ValueError(f"age must be positive, got {age}")' in tb
    assert "return [parse_age(t) for t in texts]" in tb


def test_cell_capture_in_kernel(nb: Notebook, tmp_path: Path) -> None:
    nb.cell(
        """
        WORDS = ["a", "bb", "ccc"]
        def weight(w):
            return len(w) * 10
        _src = get_ipython().transform_cell('scores = {w: weight(w) for w in WORDS}\\nbest = max(scores, key=scores.get)\\nbest.upper()\\n')
        _c = _FJ.capture_cell(_src, get_ipython().user_ns, outputs=['scores'])
        _fj_plan('cell', _c, [_fj_req(_c)])
        """
    )
    assert values(nb.execute_plan("cell", tmp_path)) == [
        {"value": "CCC", "outputs": {"scores": {"a": 10, "bb": 20, "ccc": 30}}}
    ]
    err = nb.error(
        """
        _src = get_ipython().transform_cell('%time x = 1\\n')
        _FJ.capture_cell(_src, get_ipython().user_ns)
        """
    )
    assert err["ename"] == "CaptureError"
    assert "get_ipython" in err["evalue"] and "only work in the notebook kernel" in err["evalue"]
    err = nb.error("_FJ.capture_cell('y = undefined_thing + 1', get_ipython().user_ns)")
    assert "names not defined in the notebook: undefined_thing" in err["evalue"]
