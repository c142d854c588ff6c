"""Refuse connections from other local users.

flamepy speaks plain gRPC over TCP, so anyone on the machine could reach a runtime on
127.0.0.1.  For every call the runtime finds the client's socket in the kernel's socket table
(``/proc/net/tcp``, ``/proc/net/tcp6``) from the peer address and compares its owner with the
runtime's own uid.  A verdict is cached for a second per peer address: a connection keeps its
address for its whole life, and the same address cannot be taken over by another connection
that quickly (TIME_WAIT).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time
from collections.abc import Callable

import grpc

_CACHE_TTL = 1.0
_cache: dict[str, tuple[float, bool]] = {}
_cache_lock = threading.Lock()


def parse_peer(peer: str) -> tuple[str, str, int] | None:
    """``'ipv4:127.0.0.1:5000'`` -> ``('ipv4', '127.0.0.1', 5000)``; ``None`` if not TCP."""
    for family in ("ipv4", "ipv6"):
        prefix = family + ":"
        if peer.startswith(prefix):
            rest = peer[len(prefix) :]
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            try:
                return family, host, int(port)
            except ValueError:
                return None
    return None


def socket_owner(family: str, host: str, port: int) -> int | None:
    """The uid owning the local TCP socket bound to ``host:port``, from /proc/net."""
    files = ["/proc/net/tcp", "/proc/net/tcp6"]  # an IPv4 client may sit in tcp6, IPv4-mapped
    want_port = f"{port:04X}"
    for path in files:
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 8:
                        continue
                    local = fields[1]
                    if local.rsplit(":", 1)[-1] == want_port and _addr_matches(local.rsplit(":", 1)[0], host):
                        return int(fields[7])
        except OSError:
            continue
    return None


def _addr_matches(hexaddr: str, host: str) -> bool:
    """Compare a /proc/net address (32-bit words in host byte order) with ``host``."""
    try:
        raw = b"".join(
            int(hexaddr[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hexaddr), 8)
        )
        addr = ipaddress.ip_address(raw)
        want = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(want, ipaddress.IPv6Address) and want.ipv4_mapped is not None:
        want = want.ipv4_mapped
    return addr == want


def same_user_peer(peer: str) -> bool:
    """True when the peer's socket belongs to this process's user (or it is not TCP)."""
    parsed = parse_peer(peer)
    if parsed is None:
        return peer.startswith("unix:")
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(peer)
        if hit is not None and now - hit[0] < _CACHE_TTL:
            return hit[1]
    owner = socket_owner(*parsed)
    verdict = owner is not None and owner == os.getuid()
    with _cache_lock:
        if len(_cache) > 4096:
            _cache.clear()
        _cache[peer] = (now, verdict)
    return verdict


REFUSED = "connection refused: the flame-local runtime serves only the user who started it"


class PeerCheckInterceptor(grpc.ServerInterceptor):
    """Wraps every handler so it first checks ``context.peer()``."""

    def __init__(self, check: Callable[[str], bool]) -> None:
        self._check = check

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        check = self._check

        def guard(fn):  # type: ignore[no-untyped-def]
            def wrapped(request, context):  # type: ignore[no-untyped-def]
                if not check(context.peer()):
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, REFUSED)
                return fn(request, context)

            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                guard(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                guard(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler
