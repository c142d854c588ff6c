"""Refuse connections from other local users.

flamepy speaks plain gRPC over TCP, so anyone on the machine could reach a runtime on
127.0.0.1.  For every call the runtime finds the client's socket in the kernel's socket table
(an exact ``NETLINK_SOCK_DIAG`` lookup of the peer's 4-tuple, else ``/proc/net/tcp{,6}``) and
compares its owner with the runtime's own uid.  Every call is checked afresh, nothing is cached:
an address is not a connection (a reset connection's source port can be taken at once by another
user's new connection), and the lookup of the live socket takes microseconds.

When the check cannot run (no file descriptor left: EMFILE/ENFILE) the call is answered
UNAVAILABLE with that reason, never "another user".

The same lookup gives the socket's inode; :func:`socket_pid` finds which of some processes holds
it (the executor manager asks this to learn whether a watch comes from an instance).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable

import grpc

_NO_FD = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class PeerCheckUnavailable(OSError):
    """The caller's uid could not be checked (the runtime has no file descriptor left)."""


def _unavailable(exc: OSError) -> PeerCheckUnavailable:
    return PeerCheckUnavailable(
        exc.errno,
        f"the flame-local runtime cannot check the caller right now ({os.strerror(exc.errno or 0)}); "
        "retry later",
    )


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
        except OSError as exc:
            if exc.errno in _NO_FD:
                raise _unavailable(exc) from None
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


_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NETLINK_SOCK_DIAG = 4
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF


@functools.lru_cache(maxsize=64)
def _addr_bytes(family: int, host: str) -> bytes:
    """``host`` as the 16 bytes of an ``inet_diag_sockid`` address of ``family`` (pure: cached)."""
    addr = ipaddress.ip_address(host)
    if family == socket.AF_INET6 and isinstance(addr, ipaddress.IPv4Address):
        addr = ipaddress.IPv6Address("::ffff:" + host)
    if family == socket.AF_INET and isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is None:
            raise ValueError("not an IPv4 address")
        addr = addr.ipv4_mapped
    return addr.packed.ljust(16, b"\0")


def diag_socket(host: str, port: int, server_host: str, server_port: int) -> tuple[int, int] | None:
    """``(uid, inode)`` of the TCP socket ``host:port`` -> ``server_host:server_port``, by an exact
    ``NETLINK_SOCK_DIAG`` lookup (one socket, in microseconds; /proc/net/tcp lists them all)."""
    # An IPv4 peer of a server bound to an IPv4 address has an AF_INET socket: ask for that first.
    families = (socket.AF_INET, socket.AF_INET6) if ":" not in host else (socket.AF_INET6, socket.AF_INET)
    for family in families:
        try:
            src, dst = _addr_bytes(family, host), _addr_bytes(family, server_host)
        except ValueError:
            continue
        sockid = struct.pack(">HH16s16s", port, server_port, src, dst) + struct.pack(
            "=III", 0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE
        )
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        msg = struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + req
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
                nl.settimeout(1.0)
                nl.sendto(msg, (0, 0))
                data = nl.recv(65536)
        except OSError as exc:
            if exc.errno in _NO_FD:
                raise _unavailable(exc) from None
            return None
        if len(data) < 16:
            continue
        _, mtype = struct.unpack_from("=IH", data, 0)
        if mtype == _NLMSG_ERROR or mtype != _SOCK_DIAG_BY_FAMILY:
            continue
        # inet_diag_msg: family, state, timer, retrans (4) + sockid (48) + expires, rqueue, wqueue, uid, inode
        uid, inode = struct.unpack_from("=II", data, 16 + 4 + 48 + 12)
        return uid, inode
    return None


def diag_owner(host: str, port: int, server_host: str, server_port: int) -> int | None:
    """The uid of the TCP socket ``host:port`` -> ``server_host:server_port`` (see :func:`diag_socket`)."""
    found = diag_socket(host, port, server_host, server_port)
    return None if found is None else found[0]


def socket_pid(inode: int, candidates: Iterable[int]) -> int | None:
    """The first of ``candidates`` (pids) that holds the socket ``inode`` open, from /proc/<pid>/fd."""
    want = f"socket:[{inode}]"
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                    return pid
            except OSError:
                continue
    return None


def same_user_peer(peer: str, server: tuple[str, int] | None = None) -> bool:
    """True when the peer's socket belongs to this process's user (or it is not TCP).

    ``server`` (host, port) is the address the peer connected to; with it the owner is found
    by an exact netlink lookup, else (or if that fails) from the /proc socket tables.  Raises
    :class:`PeerCheckUnavailable` when neither can be opened (no file descriptor left).
    """
    parsed = parse_peer(peer)
    if parsed is None:
        return peer.startswith("unix:")
    owner = diag_owner(parsed[1], parsed[2], *server) if server is not None else None
    if owner is None:
        owner = socket_owner(*parsed)
    return owner is not None and owner == os.getuid()


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
                try:
                    allowed = check(context.peer())
                except PeerCheckUnavailable as exc:
                    context.abort(grpc.StatusCode.UNAVAILABLE, exc.strerror)
                if not allowed:
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
