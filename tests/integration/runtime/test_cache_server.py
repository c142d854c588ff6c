"""CacheServer over real Arrow Flight, driven by the unmodified flamepy 0.6.0 client and raw calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import bson
import flamepy.core.cache as flame_cache
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flamepy.core.cache import (
    ObjectRef,
    delete_objects,
    get_object,
    patch_object,
    put_object,
    update_object,
    upload_object,
)

from flame_local.cache.server import RESPONSE_SCHEMA, CacheServer, _opaque_payload, _response_row
from flame_local.cache.store import CACHE_VERSION_METADATA_KEY

OPAQUE_SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])


@pytest.fixture
def server() -> Iterator[CacheServer]:
    srv = CacheServer(host="127.0.0.1", port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def flame_env(server: CacheServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CacheServer:
    """Point flamepy at ``server`` (fresh context, empty client-side object cache)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setattr(flame_cache, "_context_cache", None)
    with flame_cache._cache_lock:
        flame_cache._object_cache.clear()
    return server


@pytest.fixture
def client(server: CacheServer) -> Iterator[flight.FlightClient]:
    c = flight.FlightClient(server.endpoint)
    try:
        yield c
    finally:
        c.close()


def opaque_batch(*rows: bytes) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([0] * len(rows), pa.uint64()), pa.array(list(rows), pa.binary())], schema=OPAQUE_SCHEMA
    )


def raw_put(
    client: flight.FlightClient,
    descriptor: flight.FlightDescriptor,
    batches: list[pa.RecordBatch],
    schema=OPAQUE_SCHEMA,
) -> bytes:
    writer, reader = client.do_put(descriptor, schema)
    try:
        for batch in batches:
            writer.write_batch(batch)
        writer.done_writing()
        meta = reader.read()
    finally:
        writer.close()
    assert meta is not None
    return meta.to_pybytes()


def raw_get(client: flight.FlightClient, ticket: str) -> pa.Table:
    return client.do_get(flight.Ticket(ticket.encode())).read_all()


def rows(table: pa.Table) -> list[tuple[int, str, bytes]]:
    return list(zip(*(table.column(n).to_pylist() for n in ("version", "kind", "data")), strict=True))


def expect_error(call, message: str, status: bytes = b"INVALID_ARGUMENT") -> flight.FlightError:
    with pytest.raises(flight.FlightError) as info:
        call()
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)
    assert info.value.extra_info == status
    return info.value


# -- lifecycle ------------------------------------------------------------------------------
def test_endpoint_port_and_idempotent_stop() -> None:
    srv = CacheServer().start()
    assert srv.port > 0 and srv.endpoint == f"grpc://127.0.0.1:{srv.port}"
    c = flight.FlightClient(srv.endpoint)
    assert [a.type for a in c.list_actions()] == ["DELETE"]
    c.close()
    srv.stop()
    srv.stop()
    with pytest.raises(RuntimeError):
        srv.start()


def test_public_endpoint_is_used_verbatim() -> None:
    with CacheServer(public_endpoint="grpc://cache.example:9090") as srv:
        assert srv.endpoint == "grpc://cache.example:9090"
        c = flight.FlightClient(f"grpc://127.0.0.1:{srv.port}")
        meta = bson.decode(raw_put(c, flight.FlightDescriptor.for_path("app/ssn"), [opaque_batch(b"x")]))
        info = c.get_flight_info(flight.FlightDescriptor.for_path(meta["key"]))
        c.close()
    assert meta["endpoint"] == "grpc://cache.example:9090"
    assert info.endpoints[0].locations[0].uri == b"grpc://cache.example:9090"


# -- flamepy client ---------------------------------------------------------------------------
def test_flamepy_put_get_update(flame_env: CacheServer) -> None:
    ref = put_object("app/ssn", {"a": 1})
    assert ref.endpoint == flame_env.endpoint and ref.key.startswith("app/ssn/") and ref.version == 1
    assert get_object(ref) == {"a": 1}
    new_ref = update_object(ref, {"a": 2})
    assert (new_ref.key, new_ref.version) == (ref.key, 2)
    assert get_object(new_ref) == {"a": 2}


def test_flamepy_patch_and_update_version_arithmetic(flame_env: CacheServer) -> None:
    ref = put_object("app/ssn", "base")
    for i in range(3):
        ref = patch_object(ref, i)
    assert ref.version == 4
    assert get_object(ref, deserializer=lambda base, deltas: (base, deltas)) == ("base", [0, 1, 2])
    ref = update_object(ref, "new")
    assert ref.version == 5
    assert get_object(ref, deserializer=lambda base, deltas: (base, deltas)) == ("new", [])


def test_flamepy_native_arrow_table(flame_env: CacheServer, client: flight.FlightClient) -> None:
    table = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    ref = put_object("app/ssn", table)
    got = get_object(ref)
    assert isinstance(got, pa.Table) and got.to_pydict() == table.to_pydict()
    ref2 = update_object(ref, pa.table({"x": [9]}))
    assert ref2.version == 2
    wire = raw_get(client, f"{ref.key}:0")
    assert wire.schema.metadata[CACHE_VERSION_METADATA_KEY] == b"2"
    assert wire.column("x").to_pylist() == [9]
    assert raw_get(client, f"{ref.key}:2").num_rows == 0


def test_flamepy_delete_objects(flame_env: CacheServer) -> None:
    refs = [put_object("app/s1", 1), put_object("app/s2", 2), put_object("other/s1", 3)]
    delete_objects("app/*")
    assert flame_env.store.stats().objects == 1
    with pytest.raises(flight.FlightError, match="not found"):
        get_object(ObjectRef(refs[0].endpoint, refs[0].key, 0))
    delete_objects("app/*")  # nothing left: the server still answers OK
    delete_objects(refs[2].key)
    assert flame_env.store.stats().objects == 0


def test_flamepy_upload_object_multi_batch(flame_env: CacheServer, tmp_path: Path) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 12345)  # three 1 MiB chunks
    path = tmp_path / "pkg.tar.gz"
    path.write_bytes(payload)
    ref = upload_object("app/pkg/pkg.tar.gz", str(path))
    assert (ref.endpoint, ref.key, ref.version) == (flame_env.endpoint, "app/pkg/pkg.tar.gz", 1)
    assert flame_env.store.read_bytes(ref.key) == payload
    assert upload_object("app/pkg/pkg.tar.gz", str(path)).version == 2


def test_patch_missing_object_fails(flame_env: CacheServer) -> None:
    with pytest.raises(flight.FlightError, match=r"object <app/ssn/none> not found for patch") as info:
        patch_object(ObjectRef(flame_env.endpoint, "app/ssn/none", 0), "x")
    assert info.value.extra_info == b"NOT_FOUND"


# -- DoGet replies ------------------------------------------------------------------------------
def test_do_get_full_patch_only_and_not_modified(server: CacheServer, client: flight.FlightClient) -> None:
    key = server.store.put("app/ssn", b"base").key
    server.store.patch(key, b"p2")
    server.store.patch(key, b"p3")
    assert rows(raw_get(client, f"{key}:0")) == [
        (1, "base", b"base"),
        (2, "patch", b"p2"),
        (3, "patch", b"p3"),
    ]
    assert rows(raw_get(client, f"{key}:1")) == [(2, "patch", b"p2"), (3, "patch", b"p3")]
    assert rows(raw_get(client, f"{key}:2")) == [(3, "patch", b"p3")]
    assert rows(raw_get(client, f"{key}:99"))[0] == (1, "base", b"base")
    assert rows(raw_get(client, key))[0] == (1, "base", b"base")  # no version = 0
    current = raw_get(client, f"{key}:3")
    assert current.num_rows == 0
    assert current.schema.equals(RESPONSE_SCHEMA, check_metadata=True)
    assert current.schema.metadata is None
    server.store.put(key, b"new")
    assert rows(raw_get(client, f"{key}:3")) == [(4, "base", b"new")]


def test_do_get_serves_stored_buffer_without_copy() -> None:
    data = pa.py_buffer(b"z" * 4096)
    batch = _response_row(7, "base", data)
    assert batch.column(2).buffers()[2].address == data.address
    assert batch.column(2).to_pylist() == [data.to_pybytes()]


@pytest.mark.parametrize(
    ("ticket", "message", "status"),
    [
        ("app/../x:0", "Invalid key component: '..'", b"INVALID_ARGUMENT"),
        ("app/ssn:0", "Invalid key 'app/ssn': expected '<app>/<ssn>/<uuid>'", b"INVALID_ARGUMENT"),
        ("app/ssn/x:abc", "Invalid version: invalid digit found in string", b"INVALID_ARGUMENT"),
        ("app/ssn/x:", "Invalid version: cannot parse integer from empty string", b"INVALID_ARGUMENT"),
        ("app/ssn/x:-1", "Invalid version: invalid digit found in string", b"INVALID_ARGUMENT"),
        ("app/ssn/x:99999999999999999999", "number too large", b"INVALID_ARGUMENT"),
        ("app/ssn/missing:0", "object <app/ssn/missing> not found", b"NOT_FOUND"),
    ],
)
def test_do_get_bad_tickets(client: flight.FlightClient, ticket: str, message: str, status: bytes) -> None:
    expect_error(lambda: raw_get(client, ticket), message, status)


def test_do_get_non_utf8_ticket(client: flight.FlightClient) -> None:
    expect_error(lambda: client.do_get(flight.Ticket(b"\xff\xfe")).read_all(), "Invalid ticket")


# -- DoPut ------------------------------------------------------------------------------------
def test_put_result_is_bson_object_ref(server: CacheServer, client: flight.FlightClient) -> None:
    raw = raw_put(client, flight.FlightDescriptor.for_path("app/ssn/obj"), [opaque_batch(b"v")])
    assert list(bson.decode(raw)) == ["endpoint", "key", "version"]
    assert bson.decode(raw) == {"endpoint": server.endpoint, "key": "app/ssn/obj", "version": 1}
    assert b"\x12version\x00" in raw  # int64, as Flame writes it


def test_put_multi_row_and_multi_batch_concatenate(server: CacheServer, client: flight.FlightClient) -> None:
    desc = flight.FlightDescriptor.for_path("app/ssn/obj")
    raw_put(client, desc, [opaque_batch(b"ab", b"cd"), opaque_batch(b"e"), opaque_batch(b"", b"fg")])
    assert server.store.read_bytes("app/ssn/obj") == b"abcdefg"
    assert rows(raw_get(client, "app/ssn/obj:0")) == [(1, "base", b"abcdefg")]


def test_single_row_payload_is_a_zero_copy_slice() -> None:
    batch = opaque_batch(b"hello world")
    data = _opaque_payload(batch.schema, [batch])
    assert data.address == batch.column(1).buffers()[2].address
    assert data.to_pybytes() == b"hello world"


def test_large_object_round_trip(server: CacheServer, client: flight.FlightClient) -> None:
    payload = os.urandom(16 * 1024 * 1024)
    meta = bson.decode(raw_put(client, flight.FlightDescriptor.for_path("app/big"), [opaque_batch(payload)]))
    assert server.store.stats().bytes == len(payload)
    assert raw_get(client, f"{meta['key']}:0").column("data")[0].as_py() == payload


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        (flight.FlightDescriptor.for_path("app/../x"), "Invalid key component: '..'"),
        (flight.FlightDescriptor.for_path("app/*"), "Wildcard session '*' is not allowed for put"),
        (flight.FlightDescriptor.for_path("app", "ssn"), "Invalid path 'app'"),
        (
            flight.FlightDescriptor.for_command(b"PATCH:app/../x"),
            "Invalid PATCH key 'app/../x': Invalid key component",
        ),
        (flight.FlightDescriptor.for_command(b"PATCH:app/ssn"), "Invalid key 'app/ssn'"),
        (flight.FlightDescriptor.for_command(b"OTHER"), "key must be provided in descriptor path or command"),
    ],
)
def test_put_bad_descriptors(
    client: flight.FlightClient, descriptor: flight.FlightDescriptor, message: str
) -> None:
    expect_error(lambda: raw_put(client, descriptor, [opaque_batch(b"x")]), message)


def test_put_zero_batches_and_zero_rows(server: CacheServer, client: flight.FlightClient) -> None:
    desc = flight.FlightDescriptor.for_path("app/ssn")
    expect_error(lambda: raw_put(client, desc, []), "No data received")
    expect_error(lambda: raw_put(client, desc, [opaque_batch()]), "Expected at least one row")
    assert server.store.stats().objects == 0


def test_put_wrong_columns_is_internal(client: flight.FlightClient) -> None:
    batch = pa.record_batch({"data": pa.array([b"x"])})
    with pytest.raises(flight.FlightInternalError, match="Invalid version column"):
        raw_put(client, flight.FlightDescriptor.for_path("app/ssn"), [batch], schema=batch.schema)


def test_patch_via_cmd_descriptor(server: CacheServer, client: flight.FlightClient) -> None:
    key = server.store.put("app/ssn", b"base").key
    meta = bson.decode(
        raw_put(client, flight.FlightDescriptor.for_command(f"PATCH:{key}".encode()), [opaque_batch(b"d")])
    )
    assert (meta["key"], meta["version"]) == (key, 2)
    assert [d.data.to_pybytes() for d in server.store.get(key).deltas] == [b"d"]


# -- actions, flight info -----------------------------------------------------------------------
def test_delete_action_always_answers_ok(server: CacheServer, client: flight.FlightClient) -> None:
    server.store.put("app/s1", b"x")
    server.store.put("app/s2", b"x")
    for body in (b"app/*", b"app/*", b"app/pkg/app.tar.gz"):
        assert [r.body.to_pybytes() for r in client.do_action(flight.Action("DELETE", body))] == [b"OK"]
    assert server.store.stats().objects == 0
    expect_error(lambda: list(client.do_action(flight.Action("DELETE", b"*/x"))), "Wildcard '*' only allowed")


def test_unknown_action_and_list_actions(client: flight.FlightClient) -> None:
    expect_error(
        lambda: list(client.do_action(flight.Action("FOO", b"app/*"))),
        "Unknown action type: FOO. Only DELETE is supported.",
    )
    assert [(a.type, a.description) for a in client.list_actions()] == [
        ("DELETE", "Delete objects by key prefix")
    ]


def test_flight_info_list_flights_and_schema(server: CacheServer, client: flight.FlightClient) -> None:
    key = server.store.put("app/ssn", b"12345").key
    native = pa.table({"n": [1]}).replace_schema_metadata({b"flame.cache.format": b"arrow-table-v1"})
    native_key = server.store.put_table("app/ssn", native).key
    info = client.get_flight_info(flight.FlightDescriptor.for_path(key))
    assert info.endpoints[0].ticket.ticket == key.encode()
    assert info.endpoints[0].locations[0].uri == server.endpoint.encode()
    assert len(info.schema) == 0 and info.total_records == -1
    native_info = client.get_flight_info(flight.FlightDescriptor.for_path(native_key))
    assert native_info.schema.names == ["n"]
    listed = {i.endpoints[0].ticket.ticket.decode(): i.total_bytes for i in client.list_flights()}
    assert set(listed) == {key, native_key} and listed[key] == 5
    assert client.get_schema(flight.FlightDescriptor.for_path(key)).schema.equals(RESPONSE_SCHEMA)
    expect_error(
        lambda: client.get_flight_info(flight.FlightDescriptor.for_command(b"x")), "Empty descriptor path"
    )


# -- peer check -------------------------------------------------------------------------------
def test_peer_check_refuses_and_sees_peer() -> None:
    peers: list[str] = []
    allowed = {"ok": True}

    def check(peer: str) -> bool:
        peers.append(peer)
        return allowed["ok"]

    with CacheServer(peer_check=check) as srv:
        c = flight.FlightClient(srv.endpoint)
        raw_put(c, flight.FlightDescriptor.for_path("app/ssn"), [opaque_batch(b"x")])
        allowed["ok"] = False
        for call in (
            lambda: list(c.list_actions()),
            lambda: raw_get(c, "app/ssn/x:0"),
            lambda: list(c.do_action(flight.Action("DELETE", b"app/*"))),
            lambda: raw_put(c, flight.FlightDescriptor.for_path("app/ssn"), [opaque_batch(b"x")]),
        ):
            with pytest.raises(
                flight.FlightUnauthorizedError, match="connection refused: peer belongs to another user"
            ):
                call()
        c.close()
        assert srv.store.stats().objects == 1
    assert len(peers) == 5 and all(p.startswith("ipv4:127.0.0.1:") for p in peers)
