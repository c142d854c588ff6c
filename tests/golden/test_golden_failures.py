"""Saved format-2 failures (``samples/failure2_*.txt``) rebuilt by the current kernel code.

``generate.py`` wrote them with the executor's encoder; each must decode to the exception the
rules of :mod:`flame_jupyter.failures` promise, and the encoder must still write them so. A
damaged record of any kind decodes to an exception, never raises.
"""

from __future__ import annotations

import base64
import builtins
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flame_jupyter.errors import CancelledError, RemoteError, RemoteSystemExit
from flame_jupyter.failures import decode_failure
from flame_jupyter.remote import wire

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402

NAMES = sorted(p.stem.removeprefix("failure2_") for p in (HERE / "samples").glob("failure2_*.txt"))
needs_groups = pytest.mark.skipif(not hasattr(builtins, "ExceptionGroup"), reason="Python 3.11+")


def saved(name: str) -> str:
    return (HERE / "samples" / f"failure2_{name}.txt").read_text(encoding="utf-8")


def rebuilt(name: str) -> Any:
    return decode_failure(Exception(saved(name)))


def _shape(record: Any) -> Any:
    """A record without what differs between runs: tracebacks, reprs with addresses, pickles."""
    if isinstance(record, dict):
        out = {k: _shape(v) for k, v in record.items() if k not in ("traceback", "attribute_reprs")}
        for key in ("pickle", "args"):
            if key in out:
                out[key] = bool(record[key])
        if "attributes" in out:
            out["attributes"] = sorted(record["attributes"])
        return out
    if isinstance(record, list):
        return [_shape(r) for r in record]
    return record


def test_every_sample_kind_is_there() -> None:
    assert len(NAMES) == 12, NAMES


@needs_groups
@pytest.mark.parametrize("name", NAMES)
def test_the_executor_encodes_failures_as_saved(name: str) -> None:
    record = wire.decode_failure(saved(name))
    today = wire.decode_failure(generate.failure_samples()[f"failure2_{name}.txt"])
    assert record is not None and today is not None
    assert keys_ok(record)
    assert _shape(today) == _shape(record)


def keys_ok(record: Any) -> bool:
    known = set(wire.Failure.__required_keys__ | wire.Failure.__optional_keys__)
    return set(wire.FailureCore.__required_keys__) <= set(record) <= known


def test_original_types_come_back_as_themselves() -> None:
    err = rebuilt("value_error")
    assert type(err) is ValueError and str(err) == "bad input 7" and not isinstance(err, RemoteError)
    assert err.remote_type == "ValueError" and "bad input 7" in err.remote_traceback
    assert err._render_traceback_()[0] == "Remote traceback (Flame executor):"
    assert err.__notes__[-1].startswith("Remote traceback (Flame executor):")
    err = rebuilt("key_error")
    assert type(err) is KeyError and err.args == ("missing",)
    err = rebuilt("json_decode")
    assert type(err) is json.JSONDecodeError and (err.pos, err.lineno, err.colno) == (1, 1, 2)
    assert err.doc == "{bad json" and err.remote_type == "json.decoder.JSONDecodeError"
    err = rebuilt("file_not_found")
    assert type(err) is FileNotFoundError
    assert (err.errno, err.filename) == (2, "/nonexistent-flame-dir/data.csv")
    err = rebuilt("called_process")
    assert type(err) is subprocess.CalledProcessError
    assert (err.returncode, err.output, err.stderr) == (3, "out\n", "err\n")


def test_notebook_classes_are_the_kernels_own_when_it_has_them() -> None:
    main = sys.modules["__main__"]
    for cls in (generate.NotebookError, generate.KwOnlyError, generate.LockedError):
        setattr(main, cls.__name__, cls)
    try:
        err = rebuilt("notebook_error")
        assert type(err) is generate.NotebookError and str(err) == "custom"
        err = rebuilt("kwonly")
        assert type(err) is generate.KwOnlyError and err.code == 5 and str(err) == "code 5"
        err = rebuilt("locked")  # its lock did not travel: not faithful, but still caught by its type
        assert isinstance(err, generate.LockedError) and isinstance(err, RemoteError)
        assert err.detail == "kept" and not hasattr(err, "lock") and "lock" in err.remote_attributes
        assert type(err).__name__ == "LockedError" and str(err) == "locked out"
    finally:
        for cls in (generate.NotebookError, generate.KwOnlyError, generate.LockedError):
            delattr(main, cls.__name__)


def test_unknown_types_come_back_as_remote_errors_named_like_them() -> None:
    err = rebuilt("notebook_error")  # this process's __main__ has no NotebookError
    assert isinstance(err, RemoteError) and type(err).__name__ == "NotebookError"
    assert err.remote_type == "__main__.NotebookError" and str(err) == "custom"
    assert err.args == ("custom",) and "raise exc" in err.remote_traceback


@needs_groups
def test_groups_and_chains_are_rebuilt() -> None:
    err = rebuilt("group")
    assert type(err) is builtins.ExceptionGroup and str(err) == "outer (2 sub-exceptions)"
    inner = err.exceptions[1]
    assert [type(x) for x in inner.exceptions] == [KeyError, TypeError]
    assert inner.remote_type == "ExceptionGroup"
    err = rebuilt("chained")
    assert type(err) is RuntimeError and str(err) == "outer"
    mid = err.__context__
    assert type(mid) is ValueError and str(mid) == "middle" and mid.__suppress_context__
    assert type(mid.__cause__) is KeyError and mid.__cause__.args == ("inner",)
    assert "During handling of the above exception" in err.remote_traceback
    assert len(err.__notes__) == 1 and not hasattr(mid, "__notes__")  # one note: the whole chain


def test_exit_and_cancel() -> None:
    err = rebuilt("system_exit")
    assert type(err) is RemoteSystemExit and err.code == 3 and not isinstance(err, SystemExit)
    assert "sys.exit(3)" in str(err) and "_sys.exit(3)" in err.remote_traceback
    assert isinstance(rebuilt("cancelled"), CancelledError)


def _with(record: dict[str, Any]) -> str:
    blob = base64.b64encode(json.dumps(record).encode()).decode()
    return f"X: y{wire.ERROR_MARK_START}{blob}{wire.ERROR_MARK_END}"


DAMAGED = [
    "ValueError: x" + wire.ERROR_MARK_START + "not base64!!" + wire.ERROR_MARK_END,
    "ValueError: x" + wire.ERROR_MARK_START + base64.b64encode(b"[1, 2]").decode() + wire.ERROR_MARK_END,
    _with(
        {
            "format": 2,
            "module": "builtins",
            "type": "ValueError",
            "message": "m",
            "traceback": "t",
            "pickle": "garbage",
            "args": "Zm9v",
            "attributes": {"a": "bad"},
            "attribute_reprs": {"a": "1"},
        }
    ),
    _with({"format": 2, "module": 7, "type": None, "message": ["m"], "traceback": 3, "bases": "x"}),
    _with(
        {
            "format": 2,
            "module": "builtins",
            "type": "ExceptionGroup",
            "message": "g",
            "traceback": "",
            "members": [{"type": "ValueError"}, "junk", {"format": 2, "members": 5}],
            "args_repr": ["("],
        }
    ),
    _with(
        {
            "format": 2,
            "module": "builtins",
            "type": "OSError",
            "message": "m",
            "traceback": "",
            "cause": {"cause": {"cause": "x"}},
            "context": 5,
            "suppress_context": "yes",
            "attributes": {"errno": wire.dumps_by_name("not an int")},
            "attribute_reprs": {"errno": "x"},
        }
    ),
    _with({"format": 99, "module": "no.such.module", "type": "Gone.Nested", "message": "m", "traceback": ""}),
    _with({"module": "builtins", "type": "SystemExit", "message": "2", "traceback": ""}),
    _with(
        {
            "format": 2,
            "module": "builtins",
            "type": "UnicodeDecodeError",
            "message": "m",
            "traceback": "",
            "args": wire.dumps_by_name(("only one",)),
        }
    ),
]


@pytest.mark.parametrize("text", DAMAGED, ids=[f"damaged{i}" for i in range(len(DAMAGED))])
def test_a_damaged_record_decodes_without_raising(text: str) -> None:
    err = decode_failure(Exception(text))
    assert isinstance(err, BaseException)
    assert str(err) is not None and isinstance(err, Exception)  # never a kernel-stopping BaseException
