"""Serve ``flame.v1.Frontend`` on a ``grpc.aio`` server in its own thread and event loop.

Flame serves with tonic on tokio: a ``WatchTask`` stream is a task, not a thread, so open
watches never starve other calls. Here the same holds: streams (``WatchTask``, ``ListTask``) are
async generators on the server's event loop, and unary calls run on a thread pool of their own
(``grpc_workers``) that no stream ever holds.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from flamepy.proto import frontend_pb2_grpc

from flame_local.servers.peers import REFUSED

# gRPC's own receive limit (checked before a message is decoded). Flame's limit (tonic's 4 MiB)
# is checked by the frontend on the decoded request, with tonic's words; past this, gRPC answers.
TRANSPORT_LIMIT = 256 * 1024 * 1024


def _decoded(decode: Callable[[bytes], Any] | None, raw: Any) -> tuple[Any, str | None]:
    """The request, or tonic's answer to bytes that are no protobuf message: INTERNAL "failed to
    decode Protobuf message: ..." (tonic ``codec/prost.rs``; grpc.aio would say UNKNOWN)."""
    if decode is None:
        return raw, None
    try:
        return decode(raw), None
    except Exception as e:  # noqa: BLE001 - any decoding failure is the client's bad bytes
        return None, f"failed to decode Protobuf message: {e}"


class _AioPeerCheck(grpc.aio.ServerInterceptor):
    """Check ``context.peer()`` before every call (sync handlers and async streams alike), then
    decode the request (bad bytes: INTERNAL, as tonic answers)."""

    def __init__(self, check: Callable[[str], bool] | None) -> None:
        self._check = check or (lambda _peer: True)

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        check = self._check
        if handler.unary_unary:
            fn = handler.unary_unary

            decode = handler.request_deserializer

            def unary(raw: Any, context: Any) -> Any:
                if not check(context.peer()):
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED)
                request, error = _decoded(decode, raw)
                if error is not None:
                    context.abort(grpc.StatusCode.INTERNAL, error)
                return fn(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, None, handler.response_serializer)
        if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
            stream_fn = handler.unary_stream

            stream_decode = handler.request_deserializer

            async def stream(raw: Any, context: Any) -> Any:
                if not check(context.peer()):
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED)
                request, error = _decoded(stream_decode, raw)
                if error is not None:
                    await context.abort(grpc.StatusCode.INTERNAL, error)
                async for message in stream_fn(request, context):
                    yield message

            return grpc.unary_stream_rpc_method_handler(stream, None, handler.response_serializer)
        return handler


class FrontendServer:
    """The frontend's gRPC server: ``start()`` returns the port once it accepts connections."""

    def __init__(
        self,
        servicer: frontend_pb2_grpc.FrontendServicer,
        address: str,
        *,
        workers: int,
        peer_check: Callable[[str], bool] | None = None,
        options: list[tuple[str, int]] | None = None,
    ) -> None:
        self._options = [*(options or []), ("grpc.max_receive_message_length", TRANSPORT_LIMIT)]
        self._servicer = servicer
        self._address = address
        self._workers = workers
        self._peer_check = peer_check
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._grace = 1.0
        self._pool: futures.ThreadPoolExecutor | None = None

    def start(self, timeout: float = 30.0) -> int:
        ready: futures.Future[int] = futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="flame-local-frontend", daemon=True
        )
        self._thread.start()
        return ready.result(timeout)

    def stop(self, grace: float = 1.0, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            self._grace = grace
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop has just ended
                pass
        if self._thread is not None:
            self._thread.join(grace + timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _run(self, ready: futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: futures.Future[int]) -> None:
        try:
            self._stop = asyncio.Event()
            self._pool = futures.ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="flame-local-rpc"
            )
            server = grpc.aio.server(
                migration_thread_pool=self._pool,
                interceptors=[_AioPeerCheck(self._peer_check)],  # also decodes requests as tonic does
                options=self._options,
            )
            frontend_pb2_grpc.add_FrontendServicer_to_server(self._servicer, server)
            port = server.add_insecure_port(self._address)
            if port == 0:
                raise OSError(f"cannot listen on {self._address}")
            await server.start()
        except BaseException as e:  # noqa: BLE001 - reported to start()'s caller
            ready.set_exception(e)
            return
        ready.set_result(port)
        await self._stop.wait()
        await server.stop(self._grace)
