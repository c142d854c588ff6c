"""Write the saved wire samples in ``samples/`` (run once per format change, then commit them).

    python tests/golden/generate.py

Each sample is what one end of the kernel <-> executor protocol writes today, made by the real
code of that end: a payload state and a per-call env (kernel: the capture engine), the call info
(kernel: :mod:`flame_jupyter.calls`), an instance call's keywords (kernel:
:mod:`flame_jupyter.live_state`), one call record of each kind and the stream header
(executor: :mod:`flame_jupyter.remote.channel`), and failures of a few exception types (executor:
``guarded``; format 2, ``failure2_*.txt``; the format-1 ``failure_*.txt`` are kept as they were). ``test_golden_wire.py`` decodes them with the current code, so a change of either
end that the other end would not read fails a test. Samples are plain pickles (protocol 5) of
dicts, tuples, bytes and strings: nothing in them names a flame_jupyter class.
"""

from __future__ import annotations

import linecache
import pickle
import pickletools
import sys
import textwrap
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent / "samples"

#: The notebook the payload samples come from.
NOTEBOOK = """
import math

WEIGHT = 3

def helper(x):
    return math.floor(x) + 1

def score(x):
    return helper(x) * WEIGHT
"""
CELL_FILE = "/tmp/ipykernel_golden/1.py"
STATE_ID = "golden-score-0001"


def notebook() -> dict[str, Any]:
    source = textwrap.dedent(NOTEBOOK)
    linecache.cache[CELL_FILE] = (len(source), None, source.splitlines(keepends=True), CELL_FILE)
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(source, CELL_FILE, "exec"), ns)
    return ns


def payload_samples() -> dict[str, Any]:
    from flame_jupyter.capture import Capturer, MemoryObjectStore

    ns = notebook()
    captured = Capturer(store=MemoryObjectStore()).capture(ns["score"], ns=ns)
    state = dict(captured.state, id=STATE_ID)
    ns["WEIGHT"] = 5  # the notebook changed: the next call's env carries the new value
    _, kwargs = captured.prepare_call((2.5,), {})
    from flame_jupyter.remote.wire import ENV_KWARG

    return {"payload_state.pkl": state, "env.pkl": kwargs[ENV_KWARG]}


def call_samples() -> dict[str, Any]:
    """A call's info as a kernel that started the embedded runtime sends it (with ``storage``)."""
    from flame_jupyter import calls

    channel = calls.CallChannel("golden-app", "golden-session", "grpc://127.0.0.1:1")
    storage, calls._cache_storage = calls._cache_storage, lambda: "/golden/home/storage"
    try:
        return {"call_info.pkl": channel.kwarg()}
    finally:
        calls._cache_storage = storage


def cancel_samples() -> dict[str, Any]:
    """A cancel object's value as the kernel's exit cleanup writes it (with ``grace``)."""
    from flame_jupyter import calls

    return {"cancel_request.pkl": calls.cancel_request(0.2)}


def batch_samples() -> dict[str, Any]:
    """Two queued calls of ``score`` sent as one task (kernel: :mod:`flame_jupyter.pipes`)."""
    from flame_jupyter.calls import CallChannel
    from flame_jupyter.capture import Capturer, MemoryObjectStore
    from flame_jupyter.pipes import Waiting, batch_header
    from flame_jupyter.remote.wire import CALL_KWARG

    ns = notebook()
    captured = Capturer(store=MemoryObjectStore()).capture(ns["score"], ns=ns)
    waiting = []
    for x in (2.5, 4.0):
        args, kwargs = captured.prepare_call((x,), {})
        call = CallChannel("golden-app", "golden-session", "grpc://127.0.0.1:1").kwarg()[CALL_KWARG]
        waiting.append(Waiting(None, args, kwargs, dict(call, submitted=0.0)))
    return {"batch_call.pkl": {CALL_KWARG: batch_header(waiting)}}


def instance_samples() -> dict[str, Any]:
    """The keywords of a call to an instance service (kernel: :mod:`flame_jupyter.live_state`)."""
    from flame_jupyter.live_state import LiveState
    from flame_jupyter.remote.wire import EXPECT_KWARG, METHOD_KWARG

    live = LiveState()
    live.epoch, live.ran = 1, 3  # after one loss, three calls ran on the new instance
    return {"instance_call.pkl": {METHOD_KWARG: "add", EXPECT_KWARG: live.expect()}}


class _Shown:
    def _repr_html_(self) -> str:
        return "<b>shown</b>"

    def __repr__(self) -> str:
        return "Shown()"


def record_samples() -> dict[str, Any]:
    """Records as the executor's channel sends them (each flush is one patch of the stream)."""
    import io

    from flame_jupyter.remote import channel as ch
    from flame_jupyter.remote.runtime import _rt
    from flame_jupyter.remote.wire import CancelSeen, End

    class Recorded(ch._CallChannel):
        sent: list[Any] = []

        def flush(self) -> None:
            self.sent.extend(self.take())

    call = Recorded({"id": "golden-call", "stream": "golden-app/golden-session/fj-1-out", "cancel": ""})
    out, err = ch._StdProxy("stdout", io.StringIO()), ch._StdProxy("stderr", io.StringIO())
    rt = _rt()
    rt.channel = call
    try:
        out.write("hello ")
        out.write("world\n")  # merged into one record
        err.write("careful\n")
        ch._api_progress(3, 10, "step 3")
        ch._api_display(_Shown())
        call.add(CancelSeen("cancel", 1700000000.0))
        call.add(End("end", 1700000001.0, "cancelled"))
        call.finish(b"x" * (ch.PREVIEW_BYTES + 1))  # a large result gets a preview
    finally:
        rt.channel = None
    return {"records.pkl": list(call.sent), "stream_header.pkl": {"call": "golden-call", "format": 1}}


class NotebookError(Exception):
    """An exception class defined in a notebook (``__main__``), unknown to the kernel's modules."""


class LockedError(Exception):
    """A notebook exception with an attribute that does not pickle."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        import threading

        self.lock = threading.Lock()
        self.detail = "kept"


class KwOnlyError(Exception):
    """A notebook exception whose ``__init__`` takes keyword-only arguments."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


for _cls in (NotebookError, LockedError, KwOnlyError):
    _cls.__module__ = "__main__"


def _raise_chained() -> None:
    try:
        try:
            {}["inner"]
        except KeyError as e:
            raise ValueError("middle") from e
    except ValueError:
        raise RuntimeError("outer")  # noqa: B904 - the implicit __context__ is the point


def _raise(exc: BaseException) -> None:
    raise exc


def failure_samples() -> dict[str, str]:
    """Format-2 failures as the executor writes them today (``failure2_*.txt``).

    The format-1 samples (``failure_*.txt``, four keys) were written by the encoder before
    format 2; they are kept as they are, and the kernel must go on reading them.
    """
    import json
    import subprocess
    import sys as _sys

    from flame_jupyter.remote.channel import Cancelled, _encoded_failure

    def fail(make: Any) -> str:
        try:
            make()
        except BaseException as raised:  # noqa: BLE001
            return str(_encoded_failure(raised))
        raise AssertionError("did not raise")

    import builtins

    eg = builtins.ExceptionGroup  # Python 3.11+, as the samples' Python
    group = eg("outer", [ValueError("v1"), eg("inner", [KeyError("k"), TypeError("t")])])
    called = subprocess.CalledProcessError(3, ["sh", "-c", "exit 3"], output="out\n", stderr="err\n")
    return {
        "failure2_value_error.txt": fail(lambda: _raise(ValueError("bad input 7"))),
        "failure2_key_error.txt": fail(lambda: {}["missing"]),
        "failure2_notebook_error.txt": fail(lambda: _raise(NotebookError("custom"))),
        "failure2_cancelled.txt": fail(lambda: _raise(Cancelled())),
        "failure2_json_decode.txt": fail(lambda: json.loads("{bad json")),
        "failure2_file_not_found.txt": fail(lambda: open("/nonexistent-flame-dir/data.csv")),
        "failure2_called_process.txt": fail(lambda: _raise(called)),
        "failure2_group.txt": fail(lambda: _raise(group)),
        "failure2_chained.txt": fail(_raise_chained),
        "failure2_system_exit.txt": fail(lambda: _sys.exit(3)),
        "failure2_locked.txt": fail(lambda: _raise(LockedError("locked out"))),
        "failure2_kwonly.txt": fail(lambda: _raise(KwOnlyError(code=5))),
    }


def large_samples() -> dict[str, bytes]:
    """A large result's task output as the executor's bootstrapped package pickles it: a call of
    ``<package>.large.resolve_large(LARGE_FORMAT, endpoint, key, version, path)`` (the package
    named after a source hash: this one is made up, as any older executor's would be)."""
    import types

    from flame_jupyter.remote.bootstrap import PACKAGE_PREFIX
    from flame_jupyter.remote.wire import LARGE_FORMAT, LARGE_RESOLVER

    name = PACKAGE_PREFIX + "0123456789abcdef.large"
    module = types.ModuleType(name)

    def resolve(*args: Any) -> Any:
        raise AssertionError("only pickled here")

    resolve.__module__, resolve.__qualname__, resolve.__name__ = name, LARGE_RESOLVER, LARGE_RESOLVER
    setattr(module, LARGE_RESOLVER, resolve)
    args = (
        LARGE_FORMAT,
        "grpc://127.0.0.1:1",
        "golden-app/golden-session/obj-1",
        1,
        "/golden/storage/obj-1.arrow",
    )

    class Output:
        def __reduce__(self) -> tuple[Any, ...]:
            return (resolve, args)

    package = types.ModuleType(name.rpartition(".")[0])
    package.large = module  # type: ignore[attr-defined]
    sys.modules[package.__name__], sys.modules[name] = package, module
    try:
        return {"large_result.pkl": pickle.dumps(Output(), protocol=5)}
    finally:
        del sys.modules[name], sys.modules[package.__name__]


def _check_plain(name: str, data: bytes) -> None:
    for _op, arg, _pos in pickletools.genops(data):
        if isinstance(arg, str) and "flame_jupyter" in arg and "." in arg and " " not in arg:
            if arg.startswith(("flame_jupyter.", "_flame_jupyter")):
                raise SystemExit(f"{name}: names {arg!r}; samples must be plain data")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    SAMPLES.mkdir(exist_ok=True)
    for name, value in {
        **payload_samples(),
        **call_samples(),
        **cancel_samples(),
        **batch_samples(),
        **instance_samples(),
        **record_samples(),
    }.items():
        data = pickle.dumps(value, protocol=5)
        _check_plain(name, data)
        (SAMPLES / name).write_bytes(data)
    for name, text in failure_samples().items():
        (SAMPLES / name).write_text(text, encoding="utf-8")
    for name, raw in large_samples().items():  # names the executor's package: not plain data
        (SAMPLES / name).write_bytes(raw)
    print(f"wrote {len(list(SAMPLES.iterdir()))} samples to {SAMPLES}")


if __name__ == "__main__":
    main()
