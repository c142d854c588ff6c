"""Saved wire samples (``samples/``, written by ``generate.py``) decoded by the current code.

Each sample is what one end of the kernel <-> executor protocol wrote when it was saved; if
either end changes a format the other end reads, these tests fail. To change a format on
purpose, bump its version in ``flame_jupyter/remote/wire.py``, regenerate and say so.
"""

from __future__ import annotations

import math
import pickle
import sys
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from flame_jupyter.calls import CallChannel
from flame_jupyter.capture import Capturer, MemoryObjectStore
from flame_jupyter.errors import CancelledError, RemoteError
from flame_jupyter.failures import decode_failure
from flame_jupyter.remote import RemoteFunction, check_versions, wire

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "samples"
sys.path.insert(0, str(HERE))
import generate  # noqa: E402


def load(name: str) -> Any:
    return pickle.loads((SAMPLES / name).read_bytes())


def keys(td: Any) -> tuple[set[str], set[str]]:
    """Required and all keys of a ``TypedDict``."""
    return set(td.__required_keys__), set(td.__required_keys__ | td.__optional_keys__)


STATE = load("payload_state.pkl")
_made_with = ".".join(STATE["header"]["python"].split(".")[:2])
same_python = pytest.mark.skipif(
    _made_with != f"{sys.version_info[0]}.{sys.version_info[1]}",
    reason=f"the payload sample holds Python {_made_with} bytecode; regenerate it under this Python",
)


# --------------------------------------------------------------------------- kernel -> executor


def test_payload_state_has_the_declared_shape() -> None:
    required, known = keys(wire.PayloadState)
    assert required <= set(STATE) <= known
    assert set(STATE["header"]) == keys(wire.Header)[1]
    assert STATE["header"]["format"] == wire.PAYLOAD_FORMAT
    assert STATE["kind"] == "function" and isinstance(STATE["body"], bytes)


def test_env_has_the_declared_shape() -> None:
    env = load("env.pkl")
    assert keys(wire.Env)[0] <= set(env) <= keys(wire.Env)[1]  # made before "attrs" (optional)
    assert env["format"] == wire.ENV_FORMAT
    assert {kind for _name, kind, _digest, _data in env["entries"]} == {"code", "value", "module"}
    assert generate.CELL_FILE in env["lines"]


@same_python
def test_payload_and_env_run_with_the_current_executor_code() -> None:
    state = dict(STATE, id=uuid.uuid4().hex)  # a namespace of its own in this process
    check_versions(state["header"])
    expected = (math.floor(2.5) + 1) * 3
    assert RemoteFunction(state)(2.5) == expected  # the globals frozen at capture
    assert RemoteFunction(state)(2.5, **{wire.ENV_KWARG: load("env.pkl")}) == expected // 3 * 5


@same_python
def test_payload_runs_in_the_bootstrapped_copy() -> None:
    """What an executor runs: the package rebuilt from the source blob, not this checkout's files."""
    state = dict(STATE, id=uuid.uuid4().hex)
    shipped = cloudpickle.loads(cloudpickle.dumps(RemoteFunction(state)))
    assert type(shipped).__module__.startswith("_flame_jupyter_remote_")
    assert shipped(2.5, **{wire.ENV_KWARG: load("env.pkl")}) == 15


def test_call_info_is_what_the_kernel_sends_today() -> None:
    saved = load("call_info.pkl")
    assert set(saved) == {wire.CALL_KWARG}
    assert set(saved[wire.CALL_KWARG]) == keys(wire.CallInfo)[1]
    today = generate.call_samples()["call_info.pkl"]
    assert set(CallChannel("a", "s", "grpc://127.0.0.1:1").kwarg()[wire.CALL_KWARG]) == set(
        today[wire.CALL_KWARG]
    ) - {
        "storage"  # only from a kernel that started the embedded runtime
    }
    assert set(today) == set(saved) and set(today[wire.CALL_KWARG]) == set(saved[wire.CALL_KWARG])
    for key in ("stream", "cancel"):
        assert saved[wire.CALL_KWARG][key].startswith("golden-app/golden-session/")


def test_a_saved_cancel_request_is_what_the_kernel_writes_and_the_executor_reads() -> None:
    from flame_jupyter.remote.channel import CANCEL_GRACE

    saved = load("cancel_request.pkl")
    assert saved == generate.cancel_samples()["cancel_request.pkl"] == {"cancel": True, "grace": 0.2}
    assert set(saved) == set(wire.CancelRequest.__annotations__)
    assert float(saved.get("grace", CANCEL_GRACE)) == 0.2  # as remote/channel.py reads it


def test_a_batch_is_what_the_kernel_sends_and_the_executor_runs() -> None:
    saved = load("batch_call.pkl")[wire.CALL_KWARG]
    assert wire.is_batch(saved) and set(saved) == keys(wire.BatchCall)[1]
    assert saved["format"] == wire.BATCH_FORMAT and len(saved["batch"]) == 2
    today = generate.batch_samples()["batch_call.pkl"][wire.CALL_KWARG]
    assert set(today) == set(saved) and [len(item) for item in today["batch"]] == [4, 4]
    for args, kwargs, env, call in saved["batch"]:
        assert isinstance(args, tuple) and isinstance(kwargs, dict) and wire.ENV_KWARG not in kwargs
        assert env is not None and set(call) >= {"id", "stream", "cancel"}
    assert saved["cancel"] == saved["batch"][0][3]["cancel"] + "-batch"
    # The executor's end: each item runs as a lone call would and comes back as its own outcome.
    ns = generate.notebook()
    fn = Capturer(store=MemoryObjectStore()).capture(ns["score"], ns=ns).execution_object
    items = [(args, kwargs, env, None) for args, kwargs, env, _call in saved["batch"]]
    outcomes = [wire.decode_outcome(raw) for raw in fn(**{wire.CALL_KWARG: dict(saved, batch=items)})]
    assert [(o.ok, o.value) for o in outcomes] == [(True, 9), (True, 15)]  # score(x) = (floor(x) + 1) * 3


def test_instance_call_keywords_are_what_the_kernel_sends_and_the_executor_reads() -> None:
    saved = load("instance_call.pkl")
    assert saved == {wire.METHOD_KWARG: "add", wire.EXPECT_KWARG: (1, 3)}
    assert wire.Expect(*saved[wire.EXPECT_KWARG]) == wire.Expect(epoch=1, ran=3)
    assert generate.instance_samples()["instance_call.pkl"] == saved  # the kernel sends it so today
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "class Acc:\n    def __init__(self):\n        self.n = 0\n    def add(self, k):\n        self.n += k\n        return self.n\nacc = Acc()\n",
        ns,
    )
    instance = Capturer(store=MemoryObjectStore()).capture(ns["acc"], ns=ns).live_object
    with pytest.raises(Exception, match="state was lost because"):  # a new instance: 3 calls ran elsewhere
        instance(5, **saved)
    assert instance(5, **dict(saved, **{wire.EXPECT_KWARG: (1, 0)})) == 5


# --------------------------------------------------------------------------- executor -> kernel


def test_one_saved_record_of_each_kind_decodes() -> None:
    raw = load("records.pkl")
    decoded = [wire.decode_record(r) for r in raw]
    assert None not in decoded
    assert {r.kind for r in decoded} == set(wire.RECORD_TYPES)
    for r, rec in zip(raw, decoded, strict=True):
        assert isinstance(rec, wire.RECORD_TYPES[r[0]])
        assert wire.encode_record(rec) == r and type(wire.encode_record(rec)) is tuple
    by_kind = {rec.kind: rec for rec in decoded}
    assert by_kind["stdout"].text == "hello world\n" and by_kind["stderr"].text == "careful\n"
    progress = by_kind["progress"]
    assert (progress.done, progress.total, progress.message) == (3.0, 10.0, "step 3")
    assert by_kind["display"].bundle == {"text/html": "<b>shown</b>", "text/plain": "Shown()"}
    assert by_kind["preview"].size > (1 << 20) and "text/plain" in by_kind["preview"].bundle
    assert by_kind["end"].reason == "cancelled"


def _untimed(records: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [r[:4] if r[0] == "progress" else r for r in records]


def test_the_executor_writes_the_saved_records_today() -> None:
    today = generate.record_samples()
    assert _untimed(today["records.pkl"]) == _untimed(load("records.pkl"))
    assert today["stream_header.pkl"] == load("stream_header.pkl")
    assert set(load("stream_header.pkl")) == keys(wire.StreamHeader)[1]


def failure(name: str) -> str:
    return (SAMPLES / f"failure_{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "cls", "remote_type", "message"),
    [
        ("value_error", ValueError, "ValueError", "bad input 7"),
        ("key_error", KeyError, "KeyError", "'missing'"),
        ("notebook_error", RemoteError, "__main__.NotebookError", "custom"),
    ],
)
def test_saved_failures_decode_to_the_remote_type(
    name: str, cls: type, remote_type: str, message: str
) -> None:
    err = decode_failure(Exception(failure(name)))
    assert isinstance(err, RemoteError) and isinstance(err, cls)
    assert err.remote_type == remote_type
    assert err.args[0] == message
    assert remote_type.rsplit(".", 1)[-1] in err.remote_traceback


def test_saved_cancel_decodes_to_cancelled() -> None:
    err = decode_failure(Exception(failure("cancelled")))
    assert isinstance(err, CancelledError)


@pytest.mark.parametrize("name", ["value_error", "key_error", "notebook_error", "cancelled"])
def test_saved_format1_failures_keep_their_shape(name: str) -> None:
    """Format 1 (before ``FAILURE_FORMAT`` 2): four keys, still what ``encode_failure`` writes bare."""
    text = failure(name)
    record = wire.decode_failure(text)
    assert record is not None and set(record) == keys(wire.FailureCore)[1]
    assert (
        wire.encode_failure(record["module"], record["type"], record["message"], record["traceback"]) == text
    )
    today = wire.decode_failure(generate.failure_samples()[f"failure2_{name}.txt"])
    assert today is not None and today["format"] == wire.FAILURE_FORMAT
    assert {k: today[k] for k in ("module", "type", "message")} == {  # type: ignore[literal-required]
        k: record[k]  # type: ignore[literal-required]
        for k in ("module", "type", "message")
    }
