"""``flame.v1.Frontend``: the gRPC service flamepy talks to, on the generated stubs from flamepy.

Every RPC maps its errors exactly as Flame does (see :mod:`flame_local.errors`); application
registration errors come back as ``Result{return_code: -1, message}`` as in Flame. Unary calls
are plain functions (run on the server's thread pool); the streams ``WatchTask`` and ``ListTask``
are async generators on the server's event loop (:mod:`flame_local.servers.serving`), so an open
watch holds no thread, as in Flame's tonic server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

from flame_local.errors import Code, FlameRuntimeError
from flame_local.state import SessionSpec, Store, apps
from flame_local.state.records import parse_task_id

log = logging.getLogger(__name__)

# tonic 0.14's default `max_decoding_message_size` (Flame's apiserver sets none of its own).
MAX_MESSAGE = 4 * 1024 * 1024

_STATUS = {
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}

F = TypeVar("F", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, err: FlameRuntimeError) -> None:
    context.abort(_STATUS[err.code], err.message)


def _too_large(request: Any) -> str | None:
    size = request.ByteSize()
    if size <= MAX_MESSAGE:
        return None
    return f"Error, decoded message length too large: found {size} bytes, the limit is: {MAX_MESSAGE} bytes"


def flame_errors(fn: F) -> F:
    """Turn FlameRuntimeError into Flame's status codes, and anything else into INTERNAL with
    a one-line message (never a server traceback as the reply)."""

    @functools.wraps(fn)
    def unary(self: FrontendService, request: Any, context: grpc.ServicerContext) -> Any:
        too_large = _too_large(request)
        if too_large is not None:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, too_large)
        try:
            return fn(self, request, context)
        except FlameRuntimeError as e:
            _abort(context, e)
        except Exception as e:  # noqa: BLE001 - the reply must stay a Flame error
            if isinstance(e, grpc.RpcError) or type(e).__name__ in ("_AbortError", "AbortError"):
                raise
            log.exception("internal error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")

    return unary  # type: ignore[return-value]


def flame_stream_errors(fn: F) -> F:
    """The same for a stream (an async generator on the server's loop)."""

    @functools.wraps(fn)
    async def stream(self: FrontendService, request: Any, context: Any) -> AsyncIterator[Any]:
        too_large = _too_large(request)
        if too_large is not None:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, too_large)
        try:
            async for message in fn(self, request, context):
                yield message
        except FlameRuntimeError as e:
            await context.abort(_STATUS[e.code], e.message)

    return stream  # type: ignore[return-value]


class FrontendService(frontend_pb2_grpc.FrontendServicer):
    """Answers every RPC of ``flame.v1.Frontend`` from a :class:`~flame_local.state.Store`."""

    def __init__(
        self,
        store: Store,
        list_executors: Callable[[], list[types_pb2.Executor]] = list,
        node: Callable[[], types_pb2.Node] | None = None,
        *,
        watch_errors: bool = False,
        on_watch: Callable[[str, str], Callable[[], None]] | None = None,
    ) -> None:
        self.store = store
        # on_watch(peer, session_id) as a WatchTask stream opens; what it returns runs as it ends
        # (the executor manager lends the slot of an instance that waits: see executors/lending.py)
        self._on_watch = on_watch
        self._list_executors = list_executors
        self._node = node or _local_node
        self._watch_errors = watch_errors  # not Flame: see RuntimeSettings.watch_errors

    # -- applications ---------------------------------------------------------------------------
    def _app_result(self, action: Callable[[], None]) -> types_pb2.Result:
        try:
            action()
        except FlameRuntimeError as e:
            return types_pb2.Result(return_code=-1, message=e.message)
        return types_pb2.Result(return_code=0)

    @flame_errors
    def RegisterApplication(self, request, context):  # noqa: N802
        if not request.HasField("application"):
            raise FlameRuntimeError(Code.INVALID_ARGUMENT, "applilcation spec is missed")
        apps.validate_spec(request.application)
        return self._app_result(lambda: self.store.register_application(request.name, request.application))

    @flame_errors
    def UpdateApplication(self, request, context):  # noqa: N802
        if not request.HasField("application"):
            raise FlameRuntimeError(Code.INVALID_ARGUMENT, "applilcation spec is missed")
        apps.validate_spec(request.application)
        return self._app_result(lambda: self.store.update_application(request.name, request.application))

    @flame_errors
    def UnregisterApplication(self, request, context):  # noqa: N802
        return self._app_result(lambda: self.store.unregister_application(request.name))

    @flame_errors
    def GetApplication(self, request, context):  # noqa: N802
        return self.store.get_application(request.name).to_proto()

    @flame_errors
    def ListApplication(self, request, context):  # noqa: N802
        return types_pb2.ApplicationList(applications=[a.to_proto() for a in self.store.list_applications()])

    # -- executors and nodes -------------------------------------------------------------------
    @flame_errors
    def ListExecutor(self, request, context):  # noqa: N802
        return types_pb2.ExecutorList(executors=self._list_executors())

    @flame_errors
    def ListNodes(self, request, context):  # noqa: N802
        return types_pb2.NodeList(nodes=[self._node()])

    @flame_errors
    def GetNode(self, request, context):  # noqa: N802
        node = self._node()
        if request.name != node.metadata.name:
            raise FlameRuntimeError(Code.NOT_FOUND, f"node <{request.name}> not found")
        return frontend_pb2.GetNodeResponse(node=node)

    # -- sessions -------------------------------------------------------------------------------
    @flame_errors
    def CreateSession(self, request, context):  # noqa: N802
        if not request.HasField("session"):
            raise FlameRuntimeError(Code.INVALID_ARGUMENT, "session spec")
        return self.store.create_session(request.session_id, SessionSpec.from_proto(request.session))

    @flame_errors
    def OpenSession(self, request, context):  # noqa: N802
        spec = SessionSpec.from_proto(request.session) if request.HasField("session") else None
        return self.store.open_session(request.session_id, spec)

    @flame_errors
    def CloseSession(self, request, context):  # noqa: N802
        return self.store.close_session(request.session_id)

    @flame_errors
    def DeleteSession(self, request, context):  # noqa: N802
        return self.store.delete_session(request.session_id)

    @flame_errors
    def GetSession(self, request, context):  # noqa: N802
        return self.store.get_session(request.session_id)

    @flame_errors
    def ListSession(self, request, context):  # noqa: N802
        return types_pb2.SessionList(sessions=self.store.list_sessions())

    # -- tasks ----------------------------------------------------------------------------------
    @flame_errors
    def CreateTask(self, request, context):  # noqa: N802
        if not request.HasField("task"):
            raise FlameRuntimeError(Code.INVALID_ARGUMENT, "session spec")
        task = request.task
        return self.store.create_task(task.session_id, task.input if task.HasField("input") else None)

    @flame_errors
    def GetTask(self, request, context):  # noqa: N802
        return self.store.get_task(request.session_id, request.task_id)

    @flame_stream_errors
    async def WatchTask(self, request, context):  # noqa: N802
        """Flame's ``Frontend::watch_task`` loop over ``Controller::watch_task``: each round takes
        the task's state as its start, and sends the task once that state changed or is terminal;
        the stream ends after a terminal state. A task that is unknown or goes away ends the
        stream without a message or error (Flame ``break``s on the error) unless ``watch_errors``;
        a stopping runtime ends it with UNAVAILABLE (Flame's process would be gone)."""
        sid, task_id = request.session_id, request.task_id
        parse_task_id(task_id)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the server's loop has ended
                pass

        try:
            unwatch = self.store.watch(sid, task_id, wake)
        except FlameRuntimeError as e:
            if e.code == Code.NOT_FOUND and not self._watch_errors:
                return
            raise
        ended = self._on_watch(context.peer(), sid) if self._on_watch is not None else None
        try:
            start = None
            while True:
                changed.clear()
                now = self.store.watched(sid, task_id)
                if now is None:
                    if self._watch_errors:
                        raise FlameRuntimeError(Code.NOT_FOUND, f"task <{sid}/{task_id}> is gone")
                    return
                state, proto = now
                if start is None:
                    start = state
                if state != start or state.terminal:
                    yield proto
                    if state.terminal:
                        return
                    start = None  # the next round starts from the state now
                    continue
                await changed.wait()
        finally:
            unwatch()
            if ended is not None:
                ended()

    @flame_stream_errors
    async def ListTask(self, request, context):  # noqa: N802
        for task in self.store.list_tasks(request.session_id):
            yield task


def _local_node() -> types_pb2.Node:
    import os

    name = platform.node() or "localhost"
    cpus = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    capacity = types_pb2.ResourceRequirement(cpu=cpus, memory=memory, gpu=_gpus())
    return types_pb2.Node(
        metadata=types_pb2.Metadata(id=name, name=name),
        spec=types_pb2.NodeSpec(hostname=name),
        status=types_pb2.NodeStatus(
            state=types_pb2.NodeState.Ready,
            capacity=capacity,
            allocatable=capacity,
            info=types_pb2.NodeInfo(arch=platform.machine(), os=platform.system().lower()),
            addresses=[types_pb2.NodeAddress(type="InternalIP", address="127.0.0.1")],
        ),
    )


def _gpus() -> int:
    """GPUs as Flame v0.6.0's node counts them (``common/src/apis/types.rs`` ``detect_gpus``):
    ``CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none), else the NVIDIA devices the driver
    lists (Flame asks NVML; the driver's ``/proc`` entries are the same devices), else 0."""
    import os

    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices is not None:
        return 0 if devices in ("", "-1") else len(devices.split(","))
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
