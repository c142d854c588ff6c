"""Every remote exception type survives the trip back to a real kernel (issues 16 and 19).

One kernel, one service that raises an exception chosen by name, many calls. Each case checks
that ``get()`` raises something ``except TheType`` catches, with the remote message, the
attributes that matter, the remote traceback, and the future ``failed`` (state and the
text/plain fallback of its display). A representative subset also runs as ``%%flame`` cells.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel_helpers import KernelSession

SETUP = r'''
import csv, decimal, errno, io, json, subprocess, sys, threading
import numpy as np
import pandas as pd
import flame_jupyter as fj


class NotebookError(Exception):
    pass


class NotebookValueError(ValueError):
    def __init__(self, value):
        super().__init__(f"bad value {value}")
        self.value = value


class KwOnlyError(Exception):
    def __init__(self, *, code, reason):
        super().__init__(f"code {code}: {reason}")
        self.code = code
        self.reason = reason


class LockedError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()
        self.detail = "kept"


class BadReduceError(Exception):
    def __reduce__(self):
        raise RuntimeError("this exception refuses to be pickled")


def raise_kind(kind):
    if kind == "json":
        json.loads("{bad json")
    if kind == "csv":
        list(csv.reader(['a,"b'], strict=True))
    if kind == "unicode_decode":
        b"ok \xff".decode("utf-8")
    if kind == "unicode_encode":
        "caf\u00e9".encode("ascii")
    if kind == "file_not_found":
        open("/nonexistent-flame-dir/data.csv")
    if kind == "permission":
        raise PermissionError(errno.EACCES, "Permission denied", "/root/secret.txt")
    if kind == "called_process":
        subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=True, capture_output=True, text=True)
    if kind == "timeout_expired":
        raise subprocess.TimeoutExpired(["sleep", "5"], 0.2, output=b"partial")
    if kind == "group":
        raise ExceptionGroup("outer", [ValueError("v1"), ExceptionGroup("inner", [KeyError("k"), TypeError("t")])])
    if kind == "keyboard_interrupt":
        raise KeyboardInterrupt
    if kind == "system_exit":
        sys.exit(3)
    if kind == "kwonly":
        raise KwOnlyError(code=5, reason="nope")
    if kind == "locked":
        raise LockedError("locked out")
    if kind == "notebook":
        raise NotebookError("custom")
    if kind == "notebook_value":
        raise NotebookValueError(7)
    if kind == "module_not_found":
        import no_such_module_flame_xyz  # noqa: F401
    if kind == "key":
        return {}["missing"]
    if kind == "index":
        return [][3]
    if kind == "zero":
        return 1 / 0
    if kind == "recursion":
        def down(n):
            return down(n + 1)
        return down(0)
    if kind == "memory":
        raise MemoryError("explicit out of memory")
    if kind == "assertion":
        assert kind == "nothing", "assertion message"
    if kind == "stop_iteration":
        raise StopIteration(42)
    if kind == "timeout":
        raise TimeoutError("remote timeout")
    if kind == "not_implemented":
        raise NotImplementedError("later")
    if kind == "axis":
        return np.sum(np.zeros(3), axis=2)
    if kind == "linalg":
        return np.linalg.inv(np.zeros((2, 2)))
    if kind == "pandas_key":
        return pd.DataFrame({"a": [1]})["b"]
    if kind == "parser":
        return pd.read_csv(io.StringIO("a,b\n1,2\n1,2,3,4\n"))
    if kind == "decimal":
        return decimal.Decimal("not a number")
    if kind == "bad_reduce":
        raise BadReduceError("cannot reduce")
    if kind == "chained":
        try:
            try:
                {}["inner"]
            except KeyError as e:
                raise ValueError("middle") from e
        except ValueError:
            raise RuntimeError("outer")
    if kind == "generator":
        return (i for i in range(3))
    return "no error"


def numbers(n):
    for i in range(n):
        yield i


def outcome(f, catch, *attrs):
    """What get() raised, as JSON-able facts (any other exception fails the cell)."""
    try:
        value = f.get(timeout=60)
    except catch as e:
        return facts(e, f, attrs)
    return {"type": "<no exception>", "value": repr(value)}


def facts(e, f, attrs):
    plain = f._repr_mimebundle_().get("text/plain", "") if f is not None else ""
    return {
        "type": type(e).__name__,
        "str": str(e),
        "args": repr(e.args),
        "attrs": {a: repr(getattr(e, a, "<missing>")) for a in attrs},
        "tb": getattr(e, "remote_traceback", "") or "",
        "remote_type": getattr(e, "remote_type", "") or "",
        "is_remote_error": isinstance(e, fj.RemoteError),
        "state": f.state if f is not None else "",
        "plain": plain,
    }
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("exc-home")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("exc-cwd"), extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        k.run(SETUP)
        k.run("%flame_service boom = raise_kind\n%flame_service gen = numbers")
        assert k.value("boom('none').get(timeout=60)") == "no error"
        yield k


def case(k: KernelSession, kind: str, catch: str, *attrs: str) -> dict[str, Any]:
    """Call the service with ``kind`` and catch ``catch``: the facts of what came back."""
    spec = ", ".join([f"boom({kind!r})", catch, *(repr(a) for a in attrs)])
    r = k.execute(f"import json as _j; print(_j.dumps(outcome({spec})))", timeout=90)
    assert r.status == "ok", r.error_text() + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["type"] != "<no exception>", got
    return got


def failed_with_traceback(got: dict[str, Any], line: str) -> None:
    assert got["state"] == "failed", got
    assert "failed" in got["plain"], got["plain"]
    assert line in got["tb"], got["tb"]


# (kind, except clause, expected type name, expected str, {attr: repr}, a line of the traceback)
CASES: list[tuple[str, str, str, str, dict[str, str], str]] = [
    (
        "json",
        "json.JSONDecodeError",
        "JSONDecodeError",
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        {"pos": "1", "lineno": "1", "colno": "2", "doc": "'{bad json'"},
        'json.loads("{bad json")',
    ),
    ("csv", "csv.Error", "Error", "unexpected end of data", {}, "csv.reader"),
    (
        "unicode_decode",
        "UnicodeDecodeError",
        "UnicodeDecodeError",
        "'utf-8' codec can't decode byte 0xff in position 3: invalid start byte",
        {"encoding": "'utf-8'", "start": "3", "end": "4", "object": "b'ok \\xff'"},
        'decode("utf-8")',
    ),
    (
        "unicode_encode",
        "UnicodeEncodeError",
        "UnicodeEncodeError",
        "'ascii' codec can't encode character '\\xe9' in position 3: ordinal not in range(128)",
        {"encoding": "'ascii'", "start": "3"},
        'encode("ascii")',
    ),
    (
        "file_not_found",
        "FileNotFoundError",
        "FileNotFoundError",
        "[Errno 2] No such file or directory: '/nonexistent-flame-dir/data.csv'",
        {
            "errno": "2",
            "filename": "'/nonexistent-flame-dir/data.csv'",
            "strerror": "'No such file or directory'",
        },
        "open(",
    ),
    (
        "permission",
        "PermissionError",
        "PermissionError",
        "[Errno 13] Permission denied: '/root/secret.txt'",
        {"errno": "13", "filename": "'/root/secret.txt'"},
        "raise PermissionError",
    ),
    (
        "called_process",
        "subprocess.CalledProcessError",
        "CalledProcessError",
        "Command '['sh', '-c', 'echo out; echo err >&2; exit 3']' returned non-zero exit status 3.",
        {"returncode": "3", "output": "'out\\n'", "stderr": "'err\\n'"},
        "subprocess.run(",
    ),
    (
        "timeout_expired",
        "subprocess.TimeoutExpired",
        "TimeoutExpired",
        "Command '['sleep', '5']' timed out after 0.2 seconds",
        {"timeout": "0.2", "cmd": "['sleep', '5']", "output": "b'partial'"},
        "raise subprocess.TimeoutExpired",
    ),
    (
        "kwonly",
        "KwOnlyError",
        "KwOnlyError",
        "code 5: nope",
        {"code": "5", "reason": "'nope'"},
        "raise KwOnlyError",
    ),
    ("locked", "LockedError", "LockedError", "locked out", {"detail": "'kept'"}, "raise LockedError"),
    ("notebook", "NotebookError", "NotebookError", "custom", {}, "raise NotebookError"),
    (
        "notebook_value",
        "NotebookValueError",
        "NotebookValueError",
        "bad value 7",
        {"value": "7"},
        "raise NotebookValueError",
    ),
    (
        "module_not_found",
        "ModuleNotFoundError",
        "ModuleNotFoundError",
        "No module named 'no_such_module_flame_xyz'",
        {"name": "'no_such_module_flame_xyz'"},
        "import no_such_module_flame_xyz",
    ),
    ("key", "KeyError", "KeyError", "'missing'", {"args": "('missing',)"}, '{}["missing"]'),
    ("index", "IndexError", "IndexError", "list index out of range", {}, "[][3]"),
    ("zero", "ZeroDivisionError", "ZeroDivisionError", "division by zero", {}, "1 / 0"),
    (
        "recursion",
        "RecursionError",
        "RecursionError",
        "maximum recursion depth exceeded",
        {},
        "return down(n + 1)",
    ),
    ("memory", "MemoryError", "MemoryError", "explicit out of memory", {}, "raise MemoryError"),
    ("assertion", "AssertionError", "AssertionError", "assertion message", {}, "assert kind"),
    ("stop_iteration", "StopIteration", "StopIteration", "42", {"value": "42"}, "raise StopIteration"),
    ("timeout", "TimeoutError", "TimeoutError", "remote timeout", {}, "raise TimeoutError"),
    ("not_implemented", "NotImplementedError", "NotImplementedError", "later", {}, "raise NotImplemented"),
    (
        "axis",
        "np.exceptions.AxisError",
        "AxisError",
        "axis 2 is out of bounds for array of dimension 1",
        {"axis": "2", "ndim": "1"},
        "np.sum(",
    ),
    ("linalg", "np.linalg.LinAlgError", "LinAlgError", "Singular matrix", {}, "np.linalg.inv("),
    ("pandas_key", "KeyError", "KeyError", "'b'", {}, 'pd.DataFrame({"a": [1]})["b"]'),
    (
        "parser",
        "pd.errors.ParserError",
        "ParserError",
        "Error tokenizing data. C error: Expected 2 fields in line 3, saw 4\n",
        {},
        "pd.read_csv(",
    ),
    (
        "decimal",
        "decimal.InvalidOperation",
        "InvalidOperation",
        "[<class 'decimal.ConversionSyntax'>]",
        {},
        'decimal.Decimal("not a number")',
    ),
    ("bad_reduce", "BadReduceError", "BadReduceError", "cannot reduce", {}, "raise BadReduceError"),
]


@pytest.mark.parametrize(
    ("kind", "catch", "type_name", "message", "attrs", "line"), CASES, ids=[c[0] for c in CASES]
)
def test_service_exception_is_caught_by_its_type(
    kernel: KernelSession,
    kind: str,
    catch: str,
    type_name: str,
    message: str,
    attrs: dict[str, str],
    line: str,
) -> None:
    got = case(kernel, kind, catch, *attrs)
    assert got["type"] == type_name, got
    if kind == "recursion":
        assert got["str"].startswith(message), got
    else:
        assert got["str"] == message, got
    assert got["attrs"] == attrs, got
    failed_with_traceback(got, line)
    assert type_name in got["plain"], got["plain"]


def test_exception_group_nested_matches_except_star(kernel: KernelSession) -> None:
    code = """
f = boom("group")
seen = []
def leaves(g):
    return [s for x in g.exceptions for s in (leaves(x) if isinstance(x, BaseExceptionGroup) else [str(x)])]
try:
    f.get(timeout=60)
except* ValueError as eg:
    seen.append(("value", leaves(eg)))
except* KeyError as eg:
    seen.append(("key", leaves(eg)))
except* TypeError as eg:
    seen.append(("type", leaves(eg)))
try:
    f.get(timeout=60)
except ExceptionGroup as eg:
    group = facts(eg, f, ())
    inner = eg.exceptions[1]
    shape = [eg.message, type(eg.exceptions[0]).__name__, type(inner).__name__, inner.message,
             [type(x).__name__ for x in inner.exceptions]]
print(_j.dumps([seen, group, shape]))
"""
    r = kernel.execute("import json as _j\n" + code, timeout=90)
    assert r.status == "ok", r.error_text()
    seen, group, shape = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen == [["value", ["v1"]], ["key", ["'k'"]], ["type", ["t"]]]
    assert shape == ["outer", "ValueError", "ExceptionGroup", "inner", ["KeyError", "TypeError"]]
    assert group["type"] == "ExceptionGroup" and group["str"] == "outer (2 sub-exceptions)"
    failed_with_traceback(group, "raise ExceptionGroup")


def test_cause_and_context_chains_come_back(kernel: KernelSession) -> None:
    code = """
f = boom("chained")
try:
    f.get(timeout=60)
except RuntimeError as e:
    mid = e.__context__
    out = [facts(e, f, ()), type(mid).__name__, str(mid), type(mid.__cause__).__name__, str(mid.__cause__),
           mid.__suppress_context__]
print(_j.dumps(out))
"""
    r = kernel.execute("import json as _j\n" + code, timeout=90)
    assert r.status == "ok", r.error_text()
    top, mid_type, mid_str, cause_type, cause_str, suppressed = json.loads(r.stdout.strip().splitlines()[-1])
    assert (top["type"], top["str"]) == ("RuntimeError", "outer")
    assert (mid_type, mid_str, cause_type, cause_str, suppressed) == (
        "ValueError",
        "middle",
        "KeyError",
        "'inner'",
        True,
    )
    failed_with_traceback(top, 'raise RuntimeError("outer")')
    assert "The above exception was the direct cause" in top["tb"]


@pytest.mark.parametrize(
    ("kind", "cls", "code_attr"),
    [("system_exit", "RemoteSystemExit", "3"), ("keyboard_interrupt", "RemoteKeyboardInterrupt", None)],
)
def test_remote_exit_and_interrupt_do_not_stop_the_kernel(
    kernel: KernelSession, kind: str, cls: str, code_attr: str | None
) -> None:
    got = case(kernel, kind, f"fj.errors.{cls}", "code")
    assert got["type"] == cls and got["is_remote_error"], got
    assert got["remote_type"] == ("SystemExit" if kind == "system_exit" else "KeyboardInterrupt")
    if code_attr is not None:
        assert got["attrs"] == {"code": code_attr}
        assert "sys.exit(3)" in got["str"], got
    else:
        assert "KeyboardInterrupt" in got["str"], got
    failed_with_traceback(got, "sys.exit(3)" if kind == "system_exit" else "raise KeyboardInterrupt")
    assert kernel.value("boom('none').get(timeout=60)") == "no error"  # kernel and service both alive


def test_missing_argument_type_error_has_a_remote_traceback(kernel: KernelSession) -> None:
    r = kernel.execute("import json as _j; print(_j.dumps(outcome(boom(), TypeError)))", timeout=90)
    assert r.status == "ok", r.error_text()
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["str"] == "raise_kind() missing 1 required positional argument: 'kind'"
    assert got["state"] == "failed"
    assert "missing 1 required positional argument" in got["tb"]
    assert "arguments" in got["tb"].split("TypeError")[0], got["tb"]  # says what went wrong


def test_generator_results_get_a_clear_error(kernel: KernelSession) -> None:
    for call, name in (("gen(3)", "numbers"), ("boom('generator')", "<genexpr>")):
        r = kernel.execute(f"import json as _j; print(_j.dumps(outcome({call}, TypeError)))", timeout=90)
        assert r.status == "ok", r.error_text()
        got = json.loads(r.stdout.strip().splitlines()[-1])
        assert got["state"] == "failed"
        assert name in got["str"] and "generator" in got["str"], got
        assert "list(" in got["str"] and "flame_jupyter.progress" in got["str"], got
        assert "cannot pickle" not in got["str"], got


# --------------------------------------------------------------------------- %%flame cells

CELL_CASES = [
    ("json", "JSONDecodeError", "Expecting property name enclosed in double quotes"),
    ("file_not_found", "FileNotFoundError", "No such file or directory: '/nonexistent-flame-dir/data.csv'"),
    ("called_process", "CalledProcessError", "returned non-zero exit status 3"),
    ("group", "ExceptionGroup", "outer (2 sub-exceptions)"),
    ("notebook_value", "NotebookValueError", "bad value 7"),
    ("system_exit", "RemoteSystemExit", "sys.exit(3)"),
    ("memory", "MemoryError", "explicit out of memory"),
    ("locked", "LockedError", "locked out"),
]


@pytest.mark.parametrize(("kind", "ename", "evalue"), CELL_CASES, ids=[c[0] for c in CELL_CASES])
def test_flame_cell_raises_the_remote_type(kernel: KernelSession, kind: str, ename: str, evalue: str) -> None:
    r = kernel.execute(f"%%flame\nraise_kind({kind!r})", timeout=90)
    assert r.status == "error", r.stdout
    if kind == "group":  # IPython prints any exception group with the stdlib, to stderr
        assert r.error is None and f"{ename}: {evalue}" in r.stderr, r.stderr
        assert "raise ExceptionGroup" in r.stderr.split("Remote traceback (Flame executor):")[1]
    else:
        assert r.error is not None, r.stdout
        assert r.error["ename"] == ename, r.error_text()
        assert evalue in r.error["evalue"], r.error_text()
        shown = "\n".join(r.error["traceback"])
        assert "raise_kind" in shown, shown  # the remote frames are what the cell shows
        for internal in ("magics.py", "futures.py", "threading.py"):
            assert internal not in shown, shown
    # the same cell without blocking: a failed future whose get() raises the type
    code = f"""
f = get_ipython().run_cell_magic("flame", "--no-block", "raise_kind({kind!r})")
f.wait(60)
try:
    f.get()
except {"fj.RemoteError" if ename.startswith("Remote") else "BaseException"} as e:
    print(_j.dumps(facts(e, f, ())))
"""
    r = kernel.execute("import json as _j\n" + code, timeout=90)
    assert r.status == "ok", r.error_text()
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["type"] == ename and evalue in got["str"], got
    failed_with_traceback(got, "raise_kind")


def test_flame_cell_out_of_memory_fails(kernel: KernelSession) -> None:
    r = kernel.execute("%%flame\nbuf = bytearray(40 * 2**30)\nlen(buf)", timeout=120)
    assert r.error is not None and r.error["ename"] == "MemoryError", r.error_text() + r.text
    r = kernel.execute(
        'f = get_ipython().run_cell_magic("flame", "--no-block", "buf = bytearray(40 * 2**30)")\n'
        "f.wait(90); print(f.state, type(f.error).__name__)",
        timeout=120,
    )
    assert r.status == "ok", r.error_text()
    assert r.stdout.split() == ["failed", "MemoryError"]
