"""The executor end of a call's channel, and the API remote code calls (``progress``, ``display``).

Everything here travels over Flame's public protocol only: the call's output, progress and
displays are records (:mod:`.wire`) appended (patch) to one object of the object cache, which
the client polls with version-aware gets (patch-only replies); cancel is an object the client
creates. A failed call leaves as one exception whose text carries the encoded failure. The call's code
runs on the process's worker thread (:mod:`.worker`), so a cancel never has to end the instance.
"""

from __future__ import annotations

import importlib
import io
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

from .bootstrap import _boot_fn
from .failure import encode
from .large import encode_result
from .notebook_libs import bundle_of, end_call, install_library_hooks
from .reprs import estimate_size, mime_bundle
from .runtime import _rt
from .stream import OutputBuffer, create_stream, send_records
from .wire import (
    CALL_KWARG,
    ENV_KWARG,
    STREAM_FORMAT,
    CallInfo,
    CancelRequest,
    CancelSeen,
    Display,
    Output,
    Preview,
    Progress,
    StreamHeader,
)
from .worker import Job, abandon, interrupt, is_abandoned, run_on_worker

CANCEL_POLL_DELAY = 0.05  # first cancel check after this long (short calls never pay for one)
CANCEL_POLL_EVERY = 0.5
CANCEL_GRACE = 3.0  # then code stuck in C is abandoned: the call ends cancelled, the instance lives on
FLUSH_EVERY = 0.2
CHANNEL_TICK = 0.05  # how often the channel thread looks for a call that has run a while
PREVIEW_BYTES = 1 << 20  # results estimated larger than this get a remote preview record
CANCEL_CHECK_AFTER = 0.02  # a call that starts this long after its submission may have been cancelled


class Cancelled(BaseException):
    """Raised inside a remote call that the user cancelled."""


class RemoteAPI:
    """A picklable handle to an executor-side function of this package (``progress`` & co).

    Notebook code that calls ``flame_jupyter.progress(...)`` captures this object; on the
    executor it resolves to the same function of the bootstrapped package.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return API[self._name](*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_boot_fn(), ("api", self._name))

    def __repr__(self) -> str:
        return f"<flame_jupyter.{self._name}>"


def _current() -> Any:
    return None if is_abandoned() else getattr(_rt(), "channel", None)


def _api_progress(done: float, total: float | None = None, message: str = "") -> None:
    """Report progress of the current remote call (no-op outside one)."""
    ch = _current()
    if ch is not None:
        ch.add(
            Progress("progress", float(done), None if total is None else float(total), str(message), _now())
        )


def _api_display(*objs: Any, **kwargs: Any) -> None:
    """Show rich output (HTML, images, ...) of a remote call in the notebook cell."""
    ch = _current()
    for obj in objs:
        bundle = bundle_of(obj)
        if ch is not None:
            ch.add(Display("display", bundle))
        else:
            print(bundle.get("text/plain", ""))


def _api_import_module(name: str) -> Any:
    """``importlib.import_module``, except flame_jupyter itself, which executors need not have."""
    if name == "flame_jupyter" or name.startswith("flame_jupyter."):
        try:
            return importlib.import_module(name)
        except ImportError:
            return _executor_shim()
    return importlib.import_module(name)


def _executor_shim() -> types.ModuleType:
    """What ``flame_jupyter`` is on an executor without it: the remote-side API."""
    shim = sys.modules.get("_flame_jupyter_executor_shim")
    if shim is None:
        shim = types.ModuleType("flame_jupyter")
        shim.progress = progress
        shim.display = display
        sys.modules["_flame_jupyter_executor_shim"] = shim
    return shim


def _api_run_payload(payload: Any, env: Any = None, **kwargs: Any) -> Any:
    """The ``%%flame`` cell service: run a captured cell (a :class:`RemoteFunction`) with its channel."""
    call = kwargs.pop(CALL_KWARG, None)

    def run(args: tuple[Any, ...], kw: dict[str, Any], env: Any) -> Any:
        return payload(**({ENV_KWARG: env} if env is not None else {}), **kwargs)  # a session's expect

    return guarded(call, run, (), {}, env)


#: The functions :class:`RemoteAPI` handles name.
API: dict[str, Callable[..., Any]] = {
    "run_payload": _api_run_payload,
    "progress": _api_progress,
    "display": _api_display,
    "import_module": _api_import_module,
}
progress = RemoteAPI("progress")
display = RemoteAPI("display")
run_payload = RemoteAPI("run_payload")
import_module = RemoteAPI("import_module")


def _now() -> float:
    return time.time()


class _StdProxy(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of an instance: also copies writes to the current call."""

    def __init__(self, name: str, original: Any) -> None:
        self._name = name
        self._original = original
        self._rt = _rt()

    def write(self, text: str) -> int:
        ch = getattr(self._rt, "channel", None)  # the current call (a million prints: keep it short)
        if ch is not None and text and not is_abandoned():  # a stuck call's late output is dropped
            try:
                ch.add_text(self._name, text)
            except AttributeError:  # a stand-in channel (remote/chunks.py's item recorder)
                ch.add(Output(self._name, text))  # type: ignore[arg-type]
        try:
            return self._original.write(text)
        except Exception:  # noqa: BLE001 - the instance's own log must not fail the call
            return len(text)

    def flush(self) -> None:
        try:
            self._original.flush()
        except Exception:  # noqa: BLE001
            pass

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()


def _install_std_proxies() -> None:
    rt = _rt()
    with rt.lock:
        if getattr(rt, "std_installed", False):
            return
        sys.stdout = _StdProxy("stdout", sys.stdout)
        sys.stderr = _StdProxy("stderr", sys.stderr)
        rt.std_installed = True


class _CallChannel(OutputBuffer):
    """The executor end of one call: buffered records (:class:`.stream.OutputBuffer`) to the
    cache, cancel checks. Flushes are serialised: the one at the end of a call waits for one the
    channel thread has under way (else its records could land after the client read the stream).
    """

    def __init__(self, info: CallInfo) -> None:
        super().__init__()
        self.info = info
        self.done = threading.Event()
        self.cancelled = False
        self.job: Job | None = None  # the call's code on the worker thread
        self.name = "a call"
        self._ref: Any = None
        self._endpoint: str | None = None
        self._flush_lock = threading.Lock()

    def start(self) -> None:
        """Make this the current call of the process's one channel thread (started on the first
        call). The thread looks every ``CHANNEL_TICK`` seconds and only takes up a call that has
        run ``CANCEL_POLL_DELAY``: a short call never wakes it."""
        self.started = time.monotonic()
        rt = _rt()
        with rt.lock:
            if getattr(rt, "channel_slot", None) is None:
                rt.channel_slot = [self]
                threading.Thread(
                    target=_serve_channels, args=(rt.channel_slot,), name="flame-jupyter-call", daemon=True
                ).start()
            rt.channel_slot[0] = self

    def _loop(self) -> None:
        """Run by the channel thread once the call has run ``CANCEL_POLL_DELAY``: flush output
        every ``FLUSH_EVERY``, look for a cancel every ``CANCEL_POLL_EVERY``, until it ends."""
        next_cancel_check = 0.0
        while True:
            self.flush()
            elapsed = time.monotonic() - self.started
            if self.info.get("cancel") and elapsed >= next_cancel_check and not self.cancelled:
                next_cancel_check = elapsed + CANCEL_POLL_EVERY
                if (request := self._cancel_request()) is not None:
                    self._interrupt(float(request.get("grace", CANCEL_GRACE)))
            if self.done.wait(FLUSH_EVERY):
                return

    def _cache_endpoint(self) -> str:
        if self._endpoint is None:
            from flamepy.core.types import FlameContext

            self._endpoint = FlameContext().cache.endpoint
        return self._endpoint

    def flush(self) -> None:
        """Send what was added, in patches of about ``PATCH_BYTES`` (waits for a flush under way)."""
        with self._flush_lock:
            records = self.take()
            if records and self.info.get("stream"):
                try:
                    if self._ref is None:
                        header: StreamHeader = {"call": self.info.get("id"), "format": STREAM_FORMAT}  # type: ignore[typeddict-item]
                        self._ref = create_stream(self._cache_endpoint(), self.info["stream"], header)
                    self._ref = send_records(self._ref, records)
                except Exception as exc:  # noqa: BLE001 - losing output must not fail the call
                    try:
                        sys.__stderr__.write(f"flame_jupyter: could not stream call output: {exc}\n")
                    except Exception:  # noqa: BLE001
                        pass

    def cancelled_before_start(self) -> bool:
        """True when the client cancelled this call while it waited to start. Checked (one cache
        read) only when it starts ``CANCEL_CHECK_AFTER`` past its submission or the clocks
        disagree: a call that starts at once cannot have waited for a cancel."""
        submitted = self.info.get("submitted")
        if not self.info.get("cancel"):
            return False
        if isinstance(submitted, (int, float)) and 0 <= time.time() - submitted < CANCEL_CHECK_AFTER:
            return False
        return self._cancel_request() is not None

    def _cancel_request(self) -> CancelRequest | None:
        from flamepy.core import ObjectRef, get_object

        try:
            value = get_object(ObjectRef(endpoint=self._cache_endpoint(), key=self.info["cancel"], version=0))
        except Exception:  # noqa: BLE001 - not found (the usual case) or unreachable
            return None
        return value if isinstance(value, dict) else {"cancel": True}  # any value means cancel

    def _interrupt(self, grace: float = CANCEL_GRACE) -> None:
        """Raise :class:`Cancelled` in the call; code stuck in C ``grace`` s later is abandoned (ends now)."""
        self.cancelled = True
        self.add(CancelSeen("cancel", _now()))
        job = self.job
        if job is None:
            return
        interrupt(job, Cancelled)
        if not self.done.wait(max(0.0, grace)):
            abandon(job, f"{self.name} (call {self.info.get('id')}, cancelled {time.strftime('%H:%M:%S')})")

    def finish(self, result: Any = None, failed: bool = False) -> None:
        self.done.set()
        if not failed and result is not None and self.info.get("stream"):
            try:
                size = estimate_size(result)
            except Exception:  # noqa: BLE001
                size = 0
            if size > PREVIEW_BYTES:
                self.add(Preview("preview", mime_bundle(result), size))
        self.flush()


def _serve_channels(slot: list[Any]) -> None:
    """The channel thread: flush output and watch for cancel of the current call once it has run
    a moment (an instance runs one task at a time; the loop ends as soon as the call finishes)."""
    while True:
        time.sleep(CHANNEL_TICK)
        channel = slot[0]
        if channel is None or channel.done.is_set():
            continue
        if time.monotonic() - channel.started < CANCEL_POLL_DELAY:
            continue
        try:
            channel._loop()
        except Exception:  # noqa: BLE001 - a broken channel must not stop the next call's
            pass


def guarded(
    call: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], env: Any
) -> Any:
    """Run one remote call with its channel: output and progress stream to the client, cancel
    works, and any failure leaves as one Exception whose message carries type and traceback."""
    channel = None
    if isinstance(call, dict):
        _install_std_proxies()
        install_library_hooks()
        channel = _CallChannel(call)
        channel.name = getattr(getattr(fn, "__self__", None), "__name__", None) or channel.name
        _rt().channel = channel
        channel.start()
    if channel is None:  # a plain flamepy call: exceptions stay as they are
        return fn(args, kwargs, env)
    if channel.cancelled_before_start():  # cancelled while queued: it never runs
        _rt().channel = None
        channel.done.set()
        raise _encoded_failure(Cancelled(), cancelled=True) from None
    try:
        result = _run_on_worker(channel, lambda: fn(args, kwargs, env))
    except BaseException as exc:  # noqa: BLE001 - re-raised as a plain Exception below
        _end_call(None)
        _rt().channel = None
        channel.finish(failed=True)
        raise _encoded_failure(exc, cancelled=channel.cancelled) from None
    _end_call(result)
    _rt().channel = None
    if isinstance(result, (types.GeneratorType, types.AsyncGeneratorType)):
        channel.finish(failed=True)
        raise _encoded_failure(_generator_error(result)) from None  # no traceback: no frame to show
    channel.finish(result)
    return encode_result(call, result)


def _run_on_worker(channel: _CallChannel, code: Callable[[], Any]) -> Any:
    """The call's code, run on the worker thread; raises what it raised (Cancelled if abandoned)."""

    job = channel.job = Job(code)
    run_on_worker(job)
    if job.abandoned:
        raise Cancelled()
    error, value, job.error, job.value = job.error, job.value, None, None
    if error is not None:
        raise error
    return value


def _end_call(result: Any) -> None:
    """Figures left open are sent while the call's channel is still current (never fails the call)."""
    try:
        end_call(result)
    except Exception:  # noqa: BLE001 - a figure that cannot draw must not fail the call
        pass


class RemoteFailure(Exception):
    """The one exception type a failed call leaves the executor with (flamepy sends its text)."""


def _encoded_failure(exc: BaseException, cancelled: bool = False) -> RemoteFailure:
    """``exc`` as the one exception that leaves the executor (its text: :func:`.failure.encode`)."""
    return RemoteFailure(encode(exc, cancelled=cancelled or isinstance(exc, Cancelled)))


def _generator_error(result: Any) -> TypeError:
    """What a call that returned a generator fails with: which function, and what to do."""
    name = getattr(result, "__qualname__", None) or type(result).__name__
    try:
        result.aclose() if isinstance(result, types.AsyncGeneratorType) else result.close()
    except BaseException:  # noqa: BLE001 - closing is a courtesy
        pass
    return TypeError(
        f"{name}() returned a generator, which cannot travel back to the notebook (its items do not "
        "exist yet): return a list instead (e.g. `return list(...)`), or report items while the call "
        "runs with flame_jupyter.progress(done, total, message) or flame_jupyter.display(item)"
    )
