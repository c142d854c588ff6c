"""Every format the kernel and the executor share, declared once.

The kernel writes payload states, envs and call infos; the executor writes call records and
failures; each end reads what the other wrote. Everything here is stdlib-only and travels as
plain Python data (dicts, tuples, strings): a class of this package must never be pickled into a
message, because the other end may not have this package under the same name (executors run a
bootstrapped copy, see :mod:`.bootstrap`). Records are therefore typed here as ``NamedTuple``\\ s
but sent as plain tuples (:func:`encode_record`) and typed again on reading (:func:`decode_record`).

Saved samples of each format live in ``tests/golden``; changing a format fails those tests.

Long because every shared format lives here, once: splitting it would spread one wire across modules.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import operator
import pickle
import sys
from enum import Enum
from typing import Any, Literal, NamedTuple, TypedDict

# --------------------------------------------------------------------------- keyword arguments

#: Keyword argument that carries the current notebook globals on each call (an :class:`Env`,
#: or ``None``: use the values frozen at capture).
ENV_KWARG = "__flame_env__"

#: Keyword argument that carries the call's channel (a :class:`CallInfo`): output, progress and
#: displays are appended to the ``stream`` object of the object cache (created on the first
#: record, then patched); the client cancels by creating ``cancel``.
CALL_KWARG = "__flame_call__"

#: Tag of an argument encoded by the capture engine: ``(ARG_TAG, dill_bytes)``.
ARG_TAG = "\x00flame_jupyter.arg"

#: Tag of a large argument in the object cache: ``(ARG_REF_TAG, digest, ref)``, or ``(ARG_REF_TAG,
#: digest, ref, path)`` when the kernel put it as a file of the embedded runtime's cache storage
#: (the executor maps ``path`` if it can, else fetches ``ref``); the cached object
#: is the argument pickled by the capture engine, as *parts*: the pickle stream, then its
#: out-of-band buffers (protocol 5). A store of bytes holds them joined: :data:`PARTS_MAGIC`,
#: ``<I`` count, ``<Q`` length of each, the parts; Flame's object cache holds an Arrow table
#: with one ``large_binary`` column ``part``, one row per part.
ARG_REF_TAG = "\x00flame_jupyter.argref"
PARTS_MAGIC = b"FJPARTS1"

#: A call's result at least this large (pickle stream plus protocol 5 buffers) leaves the executor
#: as parts in the object cache (same table as :data:`ARG_REF_TAG`'s, under the session's prefix):
#: the task's output is then a small object that unpickles as ``resolve_large(LARGE_FORMAT,
#: endpoint, key, version)``, ``resolve_large`` being :data:`LARGE_RESOLVER` of the shipped
#: package's ``large`` module (``remote/large.py``; the kernel decodes it with ``results.py``).
LARGE_THRESHOLD = 1 << 20
LARGE_FORMAT = 1
LARGE_RESOLVER = "resolve_large"

#: Keyword argument naming the method of a served callable instance to call (a function
#: service: without it the instance itself is called).
METHOD_KWARG = "__flame_method__"

#: Keyword argument of each call to an instance service (and of each ``%%flame --session`` cell):
#: what the kernel knows of the live state, an :class:`Expect` sent as a plain tuple. The state
#: lives only in its instance; one that does not hold what the call expects refuses it
#: (``remote/execution.py`` ``check_expect``).
EXPECT_KWARG = "__flame_expect__"


class Expect(NamedTuple):
    """The live state a call to an instance service expects (the value of :data:`EXPECT_KWARG`)."""

    epoch: int  # state losses the kernel has seen for this service
    ran: int  # calls of this epoch the kernel knows ran on the instance (a lower bound)


#: Persistent-id tag for values stored in the object cache: ``(REF_TAG, digest)``.
REF_TAG = "flame_jupyter.ref"

#: Version of the payload state (:class:`PayloadState`), checked on the executor.
PAYLOAD_FORMAT = 1

#: Version of the env (:class:`Env`) and of the stream object's base (:class:`StreamHeader`).
ENV_FORMAT = 1
STREAM_FORMAT = 1

# --------------------------------------------------------------------------- dicts


class Header(TypedDict):
    """Format and serializer versions stored in every payload (see ``versions.make_header``)."""

    format: int
    python: str
    dill: str
    cloudpickle: str


#: One notebook global: ``(name, kind, digest, data)``; kind ``"code" | "value" | "module"``;
#: ``data`` is dill bytes (code/value), a module name (module), or ``None`` when the value
#: lives in the object cache under ``refs[digest]``.
EnvEntry = tuple[str, str, str, Any]

#: A local (not pip-installed) module shipped as source: ``(top_name, digest, {relpath: bytes})``.
EnvModule = tuple[str, str, dict[str, bytes]]


#: An attribute of a shipped local module that the notebook changed since import:
#: ``(module, attribute, digest, data)``, ``data`` as in :data:`EnvEntry` (dill bytes, or ``None``
#: when the value lives in the object cache under ``refs[digest]``). Set on the executor's module
#: for the call; an attribute no longer listed gets its imported value back.
EnvAttr = tuple[str, str, str, Any]


class _EnvRequired(TypedDict):
    format: int
    entries: list[EnvEntry]
    refs: dict[str, Any]  # digest -> flamepy ObjectRef of a large value
    modules: list[EnvModule]
    lines: dict[str, str]  # notebook cell filename -> source, for tracebacks


class Env(_EnvRequired, total=False):
    """The notebook globals a call needs (the value of :data:`ENV_KWARG`)."""

    attrs: list[EnvAttr]  # absent from envs made before module attributes travelled


class _PayloadRequired(TypedDict):
    id: str  # namespace id: payloads with the same id share one namespace per process
    kind: str  # "function" | "class" | "instance" | "cell"
    name: str
    header: Header
    body: bytes  # dill bytes of the function, class, instance or cell spec
    refs: dict[str, Any]
    env: Env | None
    snapshot: bool
    threshold: int | None


class PayloadState(_PayloadRequired, total=False):
    """What a captured object carries to the executor (the state of its wrapper)."""

    session_context: Any  # flamepy SessionContext or None
    methods: list[str]  # class / instance: public methods
    doc: str | None  # class: docstring
    outputs: tuple[str, ...]  # cell: names to send back


class _CallKeys(TypedDict):
    id: str
    stream: str  # "<app>/<session>/<key>": records are patched onto this object
    cancel: str  # "<app>/<session>/<key>": the client creates it to cancel


class CallInfo(_CallKeys, total=False):
    """One call's channel (the value of :data:`CALL_KWARG`): object-cache keys."""

    submitted: float  # the kernel's time.time() at submission (absent: a start always checks for a cancel)
    storage: str  # the embedded runtime's cache.storage dir (same host): large results go there as files


class CancelRequest(TypedDict, total=False):
    """The value of a call's ``cancel`` object, which the client creates to cancel the call."""

    cancel: bool  # always True
    grace: float  # seconds the code gets to stop before it is abandoned (absent: the executor's 3 s)


class StreamHeader(TypedDict):
    """The base of a call's stream object (its patches are lists of records)."""

    call: str
    format: int


class CellResult(TypedDict):
    """What a ``%%flame`` cell returns."""

    value: Any
    outputs: dict[str, Any]


# --------------------------------------------------------------------------- call records


class Output(NamedTuple):
    """Text the call wrote (consecutive writes to one stream are merged into one record)."""

    kind: Literal["stdout", "stderr"]
    text: str


class Progress(NamedTuple):
    """``flame_jupyter.progress(done, total, message)`` inside the call."""

    kind: Literal["progress"]
    done: float
    total: float | None
    message: str
    at: float  # time.time() on the executor


class Display(NamedTuple):
    """``flame_jupyter.display(obj)`` inside the call: a MIME bundle."""

    kind: Literal["display"]
    bundle: dict[str, Any]


class Preview(NamedTuple):
    """A large result's MIME bundle, sent before the result itself."""

    kind: Literal["preview"]
    bundle: dict[str, Any]
    size: int  # estimated bytes of the result


class CancelSeen(NamedTuple):
    """The executor saw the cancel request and interrupted the call."""

    kind: Literal["cancel"]
    at: float


class End(NamedTuple):
    """Old executors only: "ending itself" (a cancelled call stuck in C). No longer written, still read:
    a call stuck in C is now abandoned on its worker thread and the instance serves on."""

    kind: Literal["end"]
    at: float
    reason: str


Record = Output | Progress | Display | Preview | CancelSeen | End

#: Record type of each kind.
RECORD_TYPES: dict[str, type[Any]] = {
    "stdout": Output,
    "stderr": Output,
    "progress": Progress,
    "display": Display,
    "preview": Preview,
    "cancel": CancelSeen,
    "end": End,
}


def encode_record(record: Record) -> tuple[Any, ...]:
    """The plain tuple that travels for ``record``."""
    return tuple(record)


def decode_record(raw: Any) -> Record | None:
    """The typed record of a plain tuple read from a stream (``None``: not a record we know)."""
    if not isinstance(raw, tuple) or not raw:
        return None
    cls = RECORD_TYPES.get(raw[0]) if isinstance(raw[0], str) else None
    if cls is None or len(raw) != len(cls._fields):
        return None
    return cls(*raw)


# --------------------------------------------------------------------------- failures

#: Marks an encoded failure inside Flame's task failure message.
ERROR_MARK_START = "\n<<flame-jupyter-error:"
ERROR_MARK_END = ">>"

#: ``module`` and ``type`` of the failure of a call the user cancelled.
CANCELLED_MODULE = "flame_jupyter"
CANCELLED_NAME = "Cancelled"

#: Version of a :class:`Failure` record. Format 1 (no ``format`` key) had only the four keys of
#: :class:`FailureCore`; readers still accept it.
FAILURE_FORMAT = 2


class FailureCore(TypedDict):
    """What every failure record has (format 1 had only this)."""

    module: str  # the remote type's module ("builtins", "json.decoder", "__main__", ...)
    type: str  # its qualified name
    message: str  # str() of the exception
    traceback: str  # the formatted remote traceback, package frames dropped


class Failure(FailureCore, total=False):
    """A remote exception: what travels between the markers (base64 JSON).

    Binary fields are base64 of :func:`dumps_by_name` bytes (``""``: did not pickle). Chained
    and grouped exceptions are records of their own (their own ``traceback`` without the chain).
    """

    format: int  # FAILURE_FORMAT
    bases: list[str]  # "module:qualname" of the type's MRO after itself, up to BaseException
    pickle: str  # the exception itself (args and __dict__; no traceback, no chain)
    args: str  # its args alone
    args_repr: list[str]  # repr() of each arg, always
    attributes: dict[str, str]  # name -> pickled value: __dict__, __slots__ and C-level fields
    attribute_reprs: dict[str, str]  # name -> repr() of every attribute, pickled or not
    notes: list[str]  # __notes__
    cause: Failure | None  # __cause__
    context: Failure | None  # __context__
    suppress_context: bool  # __suppress_context__ (``raise ... from``)
    members: list[Failure]  # a BaseExceptionGroup's exceptions


def encode_failure(module: str, name: str, message: str, traceback: str, **extra: Any) -> str:
    """The failure text: ``"<Type>: <message>"`` for any reader, then the marked record.

    Without ``extra`` this is the format-1 record (four keys); :mod:`.failure` passes the rest.
    """
    record: dict[str, Any] = {"module": module, "type": name, "message": message, "traceback": traceback}
    record.update(extra)
    blob = base64.b64encode(json.dumps(record).encode()).decode()
    return f"{name}: {message}{ERROR_MARK_START}{blob}{ERROR_MARK_END}"


def decode_failure(text: str) -> Failure | None:
    """The record inside a failure text (``None``: no or a damaged record). Never raises."""
    try:
        start = text.find(ERROR_MARK_START)
        if start < 0:
            return None
        end = text.find(ERROR_MARK_END, start + len(ERROR_MARK_START))
        if end < 0:
            return None
        record = json.loads(base64.b64decode(text[start + len(ERROR_MARK_START) : end]))
    except Exception:  # noqa: BLE001 - any damage: not a record
        return None
    return record if isinstance(record, dict) else None


class _Module:
    """A module by name, inside a pickle: loaded with ``importlib.import_module``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _ByName(pickle.Pickler):
    """Pickles a class that pickle cannot find by name as ``attrgetter(qualname)(import_module(module))``.

    A notebook class exists on both ends under ``__main__`` but is not the same object, so
    pickle's own by-reference check refuses it; by name, the kernel gets *its* class back. Only
    stdlib callables end up in the bytes (the other end may not have this package's name).
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _Module):
            return importlib.import_module, (obj.name,)
        if isinstance(obj, type) and not _importable(obj):
            return operator.attrgetter(obj.__qualname__), (_Module(obj.__module__),)
        return NotImplemented


def _importable(cls: type) -> bool:
    """``cls`` is what its module and qualified name lead to here (pickle's own way works)."""
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def dumps_by_name(obj: Any) -> str:
    """base64 of ``obj`` pickled with classes by name ("": it does not pickle)."""
    buf = io.BytesIO()
    try:
        _ByName(buf, protocol=5).dump(obj)
    except Exception:  # noqa: BLE001 - unpicklable (a lock, a refusing __reduce__, ...)
        return ""
    return base64.b64encode(buf.getvalue()).decode()


def loads_by_name(blob: str) -> Any:
    """The object of a :func:`dumps_by_name` blob (raises whatever unpickling raises)."""
    return pickle.loads(base64.b64decode(blob))


# --------------------------------------------------------------------------- map chunks

#: Keyword argument that makes one call a *chunk* of a map (its value: a :class:`ChunkHeader`):
#: the call's one positional argument is then a list of :data:`ChunkItem` (encoded by the capture
#: engine, or, when ``packed``, pickled to bytes: plain values are sent without it) and the call returns
#: a list of :data:`ItemOutcome` tuples, one per item, in order (see ``remote/chunks.py``).
CHUNK_KWARG = "__flame_chunk__"

#: Version of the chunk header, items and outcomes.
CHUNK_FORMAT = 1

#: One item of a chunk: ``(args, kwargs)`` of one call of the mapped function or method.
ChunkItem = tuple[tuple[Any, ...], dict[str, Any]]


class ChunkHeader(TypedDict):
    """What a chunk call says about itself (the value of :data:`CHUNK_KWARG`)."""

    format: int  # CHUNK_FORMAT
    start: int  # the map's index of the chunk's first item
    packed: bool  # the items travel as ``pickle`` bytes (plain values only: no notebook objects)


class ItemOutcome(NamedTuple):
    """What one item of a chunk ended with (travels as a plain tuple, see :func:`encode_outcome`)."""

    ok: bool
    value: Any  # the item's return value, or (not ok) its failure text (:func:`encode_failure`)
    records: list[tuple[Any, ...]]  # the item's own output/progress/display records (encoded)
    seconds: float  # how long the item ran on the executor


def encode_outcome(outcome: ItemOutcome) -> tuple[Any, ...]:
    """The plain tuple that travels for ``outcome``."""
    return tuple(outcome)


def decode_outcome(raw: Any) -> ItemOutcome:
    """The typed outcome of a plain tuple a chunk returned (raises ``ValueError`` if it is none)."""
    if not isinstance(raw, tuple) or len(raw) != len(ItemOutcome._fields):
        raise ValueError(f"not a map item outcome: {type(raw).__name__}")
    return ItemOutcome(bool(raw[0]), raw[1], list(raw[2] or []), float(raw[3]))


# --------------------------------------------------------------------------- coalesced calls

#: Version of a batch: several calls of one service method that queued in the kernel while its
#: pipe was busy, sent as one Flame task (``flame_jupyter/pipes.py``; executor: ``remote/batches.py``).
BATCH_FORMAT = 1

#: One call of a batch: ``(args, kwargs, env, call)``, as the call would have travelled alone
#: (``kwargs`` without :data:`ENV_KWARG` / :data:`CALL_KWARG`; ``call``: its own channel).
BatchItem = tuple[tuple[Any, ...], dict[str, Any], Any, CallInfo]


class BatchCall(TypedDict):
    """The value of :data:`CALL_KWARG` for a batch; the call returns one :class:`ItemOutcome` per
    item, in order (``records`` empty: each call streams on its own channel)."""

    format: int  # BATCH_FORMAT
    batch: list[BatchItem]
    cancel: str  # created (after the item's own key) when any item of the batch is cancelled


def is_batch(call: Any) -> bool:
    """True if a call's :data:`CALL_KWARG` value is a :class:`BatchCall`."""
    return isinstance(call, dict) and "batch" in call


# --------------------------------------------------------------------------- nested calls

#: Version of the references below: what a Service, an ObjectFuture or a map becomes when
#: notebook code that uses it runs on an executor (``remote/nested.py`` rebuilds them there).
NESTED_FORMAT = 1


class FlameEndpoints(TypedDict):
    """Where the kernel reaches Flame; an executor uses its own ``FLAME_ENDPOINT`` if set."""

    endpoint: str  # the frontend (gRPC), e.g. "http://127.0.0.1:40123"
    cache_endpoint: str  # the object cache (Arrow Flight), e.g. "grpc://127.0.0.1:40124"


class ServiceRef(FlameEndpoints):
    """A service captured into remote code: calling it there creates a task in its session."""

    format: int  # NESTED_FORMAT
    app: str
    session: str
    name: str
    kind: str  # "function" | "class" | "instance"
    methods: list[str]  # public methods (class/instance services, callable instances)
    payload: str  # the service's payload id (its namespace on executors)
    threshold: int | None  # pickled arguments at least this big go to the object cache
    env: Env | None  # its code's notebook globals as of the capture (None: the executor's own)


class FutureRef(FlameEndpoints):
    """A future captured into remote code: its task (watched there), or its result's ObjectRef."""

    format: int  # NESTED_FORMAT
    label: str
    session: str | None
    task: str | None
    ref: bytes | None  # ``ObjectRef.encode()`` of the result, when known
    cancel: str | None  # the call's cancel key (``CallInfo["cancel"]``), if it has one


class ValuesRef(FlameEndpoints):
    """A finished map captured into remote code: its results, one cached list."""

    format: int  # NESTED_FORMAT
    label: str
    ref: bytes  # ``ObjectRef.encode()`` of the list of results (exceptions in place)
    count: int


# --------------------------------------------------------------------------- future states


class State(str, Enum):
    """The state of a call's future (the kernel's view; executors never send it)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


#: States a future never leaves.
TERMINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED})
