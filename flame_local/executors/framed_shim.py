"""The Instance shim over plain frames on a Unix socket, for instances started from a warm interpreter.

Flame's executor manager drives an instance with three ``flame.v1.Instance`` calls (enter, invoke,
leave), strictly one at a time.  Over gRPC each costs a full HTTP/2 round trip and a thread hop on
both sides, a large share of a short task.  A warm interpreter (:mod:`flame_local.executors.warm_instance`)
can instead serve the *same* calls, handled by flamepy's own ``FlameInstanceServicer`` (so the
service code is untouched), as length-prefixed protobuf frames:

    request  = u32 length | u8 method | serialized SessionContext / TaskContext / EmptyRequest
    response = u32 length | serialized Result / TaskResult

The service then listens on ``$FLAME_INSTANCE_ENDPOINT`` + :data:`SUFFIX` instead of the gRPC
socket; the runtime uses whichever socket appears (a service that runs its own gRPC server keeps
working).  Example, the runtime side::

    client = FramedShimClient("/tmp/x/e1.sock.framed")
    result = client.invoke(shim_pb2.TaskContext(task_id="1", session_id="s"))
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from flamepy.proto import shim_pb2, types_pb2

SUFFIX = ".framed"

_ENTER, _INVOKE, _LEAVE = 1, 2, 3
_HEAD = struct.Struct(">IB")
_LEN = struct.Struct(">I")
_MAX_FRAME = 1 << 31


class ShimTransportError(Exception):
    """The instance closed the socket or did not answer in time (it died or hangs)."""

    def details(self) -> str:  # the same accessor as grpc.RpcError, for error messages
        return str(self)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ShimTransportError("the instance closed its shim socket")
        got += k
    return bytes(buf)


# -- runtime side ----------------------------------------------------------------------------------
class FramedShimClient:
    """The executor manager's end: one call at a time, like the gRPC stub it replaces."""

    def __init__(self, path: str) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise ShimTransportError(f"cannot connect to {path}: {e.strerror or e}") from None
        self._broken = False

    def _call(self, method: int, request: Any, response: Any, timeout: float | None) -> Any:
        if self._broken:
            raise ShimTransportError("the shim connection is unusable after an earlier failure")
        payload = request.SerializeToString()
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(_HEAD.pack(len(payload), method) + payload)
            (size,) = _LEN.unpack(_recv_exact(self._sock, _LEN.size))
            response.ParseFromString(_recv_exact(self._sock, size))
        except (OSError, ShimTransportError) as e:  # socket.timeout is an OSError
            self._broken = True  # a late reply would be read as the next call's answer
            if isinstance(e, ShimTransportError):
                raise
            what = "did not answer in time" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            raise ShimTransportError(f"instance shim call failed: {what}") from None
        return response

    def enter(self, ctx: shim_pb2.SessionContext, timeout: float | None) -> types_pb2.Result:
        return self._call(_ENTER, ctx, types_pb2.Result(), timeout)

    def invoke(self, ctx: shim_pb2.TaskContext) -> types_pb2.TaskResult:
        return self._call(_INVOKE, ctx, types_pb2.TaskResult(), None)

    def leave(self, timeout: float | None) -> types_pb2.Result:
        return self._call(_LEAVE, types_pb2.EmptyRequest(), types_pb2.Result(), timeout)

    def close(self) -> None:
        self._broken = True
        self._sock.close()


# -- instance side ---------------------------------------------------------------------------------
def serve(service: Any, endpoint: str) -> None:
    """Serve ``service`` (a ``flamepy.core.service.FlameService``) on ``endpoint`` + SUFFIX until
    the runtime ends this process. Calls are handled by flamepy's ``FlameInstanceServicer``."""
    from flamepy.core.service import FlameInstanceServicer

    servicer = FlameInstanceServicer(service)
    handlers = {
        _ENTER: (shim_pb2.SessionContext, servicer.OnSessionEnter),
        _INVOKE: (shim_pb2.TaskContext, servicer.OnTaskInvoke),
        _LEAVE: (types_pb2.EmptyRequest, servicer.OnSessionLeave),
    }
    path = endpoint + SUFFIX
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # the runtime retries until listen() below
    os.chmod(path, 0o600)  # the socket directory is private too; this keeps the socket so
    listener.listen(1)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                while True:
                    size, method = _HEAD.unpack(_recv_exact(conn, _HEAD.size))
                    if size > _MAX_FRAME or method not in handlers:
                        break
                    kind, handler = handlers[method]
                    request = kind()
                    request.ParseFromString(_recv_exact(conn, size))
                    reply = handler(request, None).SerializeToString()
                    conn.sendall(_LEN.pack(len(reply)) + reply)
            except (ShimTransportError, OSError):
                pass  # the runtime closed its end; wait for the next connection


def install() -> None:
    """Make flamepy's instance server speak the framed shim in this process (warm instances)."""
    import flamepy.core.service as service_mod

    def start(self: Any) -> None:
        endpoint = os.environ.get(service_mod.FLAME_INSTANCE_ENDPOINT)
        if endpoint is None:
            raise service_mod.FlameError(
                service_mod.FlameErrorCode.INVALID_CONFIG, "FLAME_INSTANCE_ENDPOINT not found"
            )
        serve(self._service, endpoint)

    service_mod.FlameInstanceServer.start = start  # type: ignore[method-assign]
