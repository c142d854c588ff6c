"""Arrow Flight object cache wire-compatible with Flame v0.6.0 (``object_cache/src/cache.rs``).

RPCs (what ``flamepy==0.6.0`` relies on):

* **DoPut** - PATH descriptor ``[b"<app>/<ssn>"]`` (new uuid4 key) or ``[b"<app>/<ssn>/<id>"]``
  (replace), CMD descriptor ``PATCH:<key>`` (append a delta). Opaque payloads are
  ``{version uint64, data binary}`` rows, concatenated across rows and batches; a schema carrying
  ``flame.cache.format=arrow-table-v1`` is stored as a native table. Replies with one PutResult
  whose app_metadata is BSON ``{endpoint, key, version}``.
* **DoGet** - ticket ``<key>:<client_version>``: zero rows when the client is current, only the
  missing deltas when they are contiguous, else base row then deltas; native tables come back
  with their own schema and ``flame.cache.version``.
* **DoAction** ``DELETE`` (key, prefix or ``<app>/*``; always one ``OK``), **ListActions**,
  **GetFlightInfo**, **ListFlights**, **GetSchema**.

Errors carry Flame's messages. pyarrow can only emit NOT_FOUND / INVALID_ARGUMENT with a Python
traceback appended, so those are sent as ``FlightServerError`` (gRPC UNKNOWN) whose
``extra_info`` names the Flame status (``b"NOT_FOUND"``, ``b"INVALID_ARGUMENT"``); internal errors
are ``FlightInternalError``.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import bson
import pyarrow as pa
import pyarrow.flight as flight

from flame_local.cache.keys import parse_ticket
from flame_local.cache.storage import DiskStorage
from flame_local.cache.store import (
    CACHE_FORMAT_ARROW_TABLE,
    CACHE_FORMAT_METADATA_KEY,
    CacheFullError,
    CacheKeyError,
    CacheStateError,
    CacheStore,
    Delta,
    GetReply,
    ObjectInfo,
    ObjectKey,
    ObjectNotFoundError,
    ReplyKind,
    join_buffers,
)

__all__ = ["RESPONSE_SCHEMA", "CacheServer", "parse_ticket"]

logger = logging.getLogger(__name__)

RESPONSE_SCHEMA = pa.schema(
    [
        pa.field("version", pa.uint64(), nullable=False),
        pa.field("kind", pa.utf8(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ]
)
PATCH_COMMAND_PREFIX = b"PATCH:"
DELETE_ACTION = "DELETE"
_MAX_BINARY_ROW = 2**31 - 1

F = TypeVar("F", bound=Callable[..., Any])


class _Internal(Exception):
    """A Flame ``Internal`` error (sent as FlightInternalError)."""


def _flight_error(exc: Exception) -> flight.FlightError:
    if isinstance(exc, flight.FlightError):
        return exc
    if isinstance(exc, ObjectNotFoundError):
        return flight.FlightServerError(str(exc), extra_info=b"NOT_FOUND")
    if isinstance(exc, CacheFullError):
        return flight.FlightServerError(str(exc), extra_info=b"RESOURCE_EXHAUSTED")
    if isinstance(exc, (CacheKeyError, CacheStateError)):
        return flight.FlightServerError(str(exc), extra_info=b"INVALID_ARGUMENT")
    if isinstance(exc, _Internal):
        return flight.FlightInternalError(str(exc))
    logger.exception("object cache: unexpected error")
    return flight.FlightInternalError(f"{type(exc).__name__}: {exc}")


def _rpc(method: F) -> F:
    """Run the peer check, then ``method``; turn every failure into a clean Flight error."""

    @functools.wraps(method)
    def wrapper(self: CacheServer, context: flight.ServerCallContext, *args: Any) -> Any:
        try:
            self._check_peer(context)
            return method(self, context, *args)
        except Exception as exc:  # mapped: never a raw traceback
            raise _flight_error(exc) from None

    return wrapper  # type: ignore[return-value]


def _binary_rows(column: pa.Array) -> list[pa.Buffer]:
    """Zero-copy slices of every value of a binary column."""
    if len(column) == 0:
        return []
    _, offsets_buf, data = column.buffers()[:3]
    offsets = pa.Array.from_buffers(pa.int32(), len(column) + 1, [None, offsets_buf], offset=column.offset)
    offsets = offsets.to_pylist()
    if data is None:
        return [pa.py_buffer(b"") for _ in range(len(column))]
    return [data.slice(start, end - start) for start, end in zip(offsets, offsets[1:], strict=False)]


def _opaque_payload(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Buffer:
    """The data of all rows of ``{version, data}`` batches, joined with at most one copy."""
    if len(schema) < 1 or schema.field(0).type != pa.uint64():
        raise _Internal("Invalid version column")
    if len(schema) < 2 or schema.field(1).type != pa.binary():
        raise _Internal("Invalid data column")
    parts = [row for batch in batches for row in _binary_rows(batch.column(1))]
    if not parts:
        raise CacheStateError("Expected at least one row")
    return join_buffers(parts)


def _is_native(schema: pa.Schema) -> bool:
    return (schema.metadata or {}).get(CACHE_FORMAT_METADATA_KEY) == CACHE_FORMAT_ARROW_TABLE


def _response_row(version: int, kind: str, data: pa.Buffer) -> pa.RecordBatch:
    """One ``{version, kind, data}`` row wrapping ``data`` without copying it."""
    if data.size > _MAX_BINARY_ROW:
        raise _Internal(f"object row of {data.size} bytes exceeds the binary column limit")
    offsets = pa.array([0, data.size], pa.int32()).buffers()[1]
    column = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, data])
    return pa.RecordBatch.from_arrays(
        [pa.array([version], pa.uint64()), pa.array([kind], pa.utf8()), column], schema=RESPONSE_SCHEMA
    )


def _reply_table(reply: GetReply) -> pa.Table:
    if reply.kind is ReplyKind.NOT_MODIFIED:
        return pa.Table.from_batches([], schema=RESPONSE_SCHEMA)
    if reply.kind is ReplyKind.NATIVE:
        return reply.obj.table
    rows = []
    if reply.kind is ReplyKind.FULL:
        rows.append(_response_row(reply.obj.version, "base", reply.obj.data))
    rows.extend(_patch_row(delta) for delta in reply.patches)
    return pa.Table.from_batches(rows, schema=RESPONSE_SCHEMA)


def _patch_row(delta: Delta) -> pa.RecordBatch:
    return _response_row(delta.version, "patch", delta.data)


def _read_batches(
    reader: flight.MetadataRecordBatchReader, check_size: Callable[[int], None]
) -> list[pa.RecordBatch]:
    """Every batch of a DoPut; ``check_size(bytes so far)`` refuses an oversized one early."""
    batches, size = [], 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return batches
        if chunk.data is not None:
            batches.append(chunk.data)
            size += chunk.data.nbytes
            check_size(size)


class _PutTarget:
    """Where a DoPut goes, decoded from its descriptor."""

    def __init__(self, descriptor: flight.FlightDescriptor) -> None:
        self.patch = False
        self.key: str | None = None
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            if descriptor.path:
                self.key = _utf8(descriptor.path[0], "Invalid descriptor path")
        elif (descriptor.command or b"").startswith(PATCH_COMMAND_PREFIX):
            self.patch = True
            self.key = _utf8(descriptor.command[len(PATCH_COMMAND_PREFIX) :], "Invalid PATCH key")
            try:
                ObjectKey.parse(self.key)
            except CacheKeyError as exc:
                raise CacheKeyError(f"Invalid PATCH key '{self.key}': {exc}") from None

    def require_key(self) -> str:
        if self.key is None:
            raise CacheStateError("key must be provided in descriptor path or command")
        return self.key


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CacheKeyError(f"{what}: {exc}") from None


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class CacheServer(flight.FlightServerBase):
    """Flame-compatible Arrow Flight object cache over a :class:`CacheStore`.

    The port is bound on construction; :meth:`start` serves in a background thread and
    :meth:`stop` shuts down (idempotent). ``peer_check(context.peer())`` runs first in every
    RPC; returning False refuses the call with ``FlightUnauthorizedError``.
    """

    def __init__(
        self,
        store: CacheStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        public_endpoint: str | None = None,
        peer_check: Callable[[str], bool] | None = None,
        storage: DiskStorage | None = None,
    ) -> None:
        super().__init__(f"grpc://{_uri_host(host)}:{port}")
        self.store = store if store is not None else CacheStore()
        self.storage = storage  # Flame's cache.storage: same-host writers' files, read through
        self._host = host
        self._endpoint = public_endpoint or f"grpc://{_uri_host(host)}:{self.port}"
        self._peer_check = peer_check
        self._state = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The endpoint put in every ObjectRef and PutResult."""
        return self._endpoint

    @property
    def port(self) -> int:
        return super().port

    def start(self, timeout: float = 10.0) -> CacheServer:
        """Serve in a background thread; return once the port accepts connections."""
        with self._state:
            if self._stopped:
                raise RuntimeError("CacheServer was stopped")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self.wait, name=f"flame-cache-{self.port}", daemon=True
                )
                self._thread.start()
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"object cache did not accept connections on {self.endpoint}"
                    ) from None
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down (waits for in-flight calls) and join the serving thread. Idempotent."""
        with self._state:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
        flight.FlightServerBase.__exit__(self, None, None, None)  # runs the one-shot finalizer
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> CacheServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _check_peer(self, context: flight.ServerCallContext) -> None:
        if self._peer_check is None:
            return
        try:
            allowed = self._peer_check(context.peer())
        except OSError as exc:  # the check could not run (no file descriptor left): not "another user"
            raise flight.FlightUnavailableError(exc.strerror or str(exc)) from None
        if not allowed:
            raise flight.FlightUnauthorizedError("connection refused: peer belongs to another user")

    # -- RPCs -----------------------------------------------------------------------------
    @_rpc
    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        target = _PutTarget(descriptor)
        batches = _read_batches(reader, self.store.check_object_size)
        if not batches:
            raise CacheStateError("No data received")
        key = target.require_key()
        schema = reader.schema
        if target.patch:
            info = self.store.patch(key, _opaque_payload(schema, batches))
        elif _is_native(schema):
            info = self.store.put_table(key, pa.Table.from_batches(batches, schema=schema))
        else:
            info = self.store.put(key, _opaque_payload(schema, batches))
        writer.write(pa.py_buffer(self._put_result(info)))

    def _put_result(self, info: ObjectInfo) -> bytes:
        return bson.encode({"endpoint": self._endpoint, "key": info.key, "version": bson.Int64(info.version)})

    @_rpc
    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        key, client_version = parse_ticket(ticket.ticket)
        if self.storage is not None:
            self.storage.read_through(self.store, key)
        reply = self.store.reply_for(key, client_version)
        return flight.RecordBatchStream(_reply_table(reply))

    @_rpc
    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> list[flight.Result]:
        body = _utf8(action.body.to_pybytes(), "Invalid action body")
        if action.type != DELETE_ACTION:
            raise CacheKeyError(f"Unknown action type: {action.type}. Only DELETE is supported.")
        count = self.store.delete(body)
        if self.storage is not None:
            self.storage.delete(body)
        logger.debug("object cache: deleted %d object(s) matching %s", count, body)
        return [flight.Result(b"OK")]

    @_rpc
    def list_actions(self, context: flight.ServerCallContext) -> list[flight.ActionType]:
        return [flight.ActionType(DELETE_ACTION, "Delete objects by key prefix")]

    @_rpc
    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        if descriptor.descriptor_type != flight.DescriptorType.PATH or not descriptor.path:
            raise CacheKeyError("Empty descriptor path")
        key = "/".join(_utf8(part, "Invalid descriptor path") for part in descriptor.path)
        if self.storage is not None:
            self.storage.read_through(self.store, key)
        schema = self.store.schema_of(key) if key.count("/") == 2 else None
        return flight.FlightInfo(
            schema if schema is not None else pa.schema([]),
            flight.FlightDescriptor.for_path(key),
            [self._flight_endpoint(key)],
            -1,
            -1,
        )

    @_rpc
    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> list[flight.FlightInfo]:
        return [
            flight.FlightInfo(
                pa.schema([]),
                flight.FlightDescriptor.for_path(info.key),
                [self._flight_endpoint(info.key)],
                -1,
                info.size,
            )
            for info in self.store.list_objects()
        ]

    def _flight_endpoint(self, key: str) -> flight.FlightEndpoint:
        return flight.FlightEndpoint(key.encode(), [self._endpoint])

    @_rpc
    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        return flight.SchemaResult(RESPONSE_SCHEMA)

    @_rpc
    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        raise flight.FlightServerError("Do exchange not implemented", extra_info=b"UNIMPLEMENTED")
