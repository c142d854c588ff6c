"""The object cache through flamepy: put/get/update/patch/delete, versions, incremental gets, volume."""

from __future__ import annotations

from typing import Any

import flamepy.core.cache as fc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conf_support import uid
from flamepy.core import FlameContext, ObjectRef, get_object, patch_object, put_object, update_object
from flamepy.core.cache import delete_objects


def raw(base: Any, deltas: list[Any]) -> dict[str, Any]:
    return {"base": base, "deltas": deltas}


def prefix() -> str:
    return f"conf-cache/{uid('ssn')}"


def _other_client_put(ref: ObjectRef, obj: Any, *, patch: bool) -> ObjectRef:
    """Write like a second process would: straight to Flight, leaving this process's cache stale."""
    client = fc._get_flight_client(ref.endpoint, fc._get_cache_tls_config())
    if patch:
        descriptor = flight.FlightDescriptor.for_command(f"PATCH:{ref.key}".encode())
    else:
        descriptor = flight.FlightDescriptor.for_path(ref.key)
    return fc._do_put_remote(client, descriptor, fc._serialize_object(obj))


def _local(ref: ObjectRef) -> fc.Object:
    with fc._cache_lock:
        return fc._object_cache[(ref.endpoint, ref.key)]


class Point:
    def __init__(self, x: int, tags: list[Any]) -> None:
        self.x, self.tags = x, tags

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.tags) == (other.x, other.tags)


def test_put_returns_a_version_one_ref_under_the_prefix(runtime) -> None:
    pre = prefix()
    ref = put_object(pre, {"msg": "hi", "n": 42})
    assert isinstance(ref, ObjectRef) and ref.endpoint
    assert ref.key.startswith(pre + "/") and ref.key.count("/") == 2
    assert ref.version == 1
    assert get_object(ref) == {"msg": "hi", "n": 42}
    second = put_object(pre, {"other": True})
    assert second.key != ref.key and second.version == 1
    assert get_object(ref) == {"msg": "hi", "n": 42}


def test_objects_of_locally_defined_classes_round_trip(runtime) -> None:
    class Local:
        def __init__(self, name: str) -> None:
            self.name = name

    obj = {"point": Point(3, [1, {"k": "v"}]), "local": Local("here")}
    got = get_object(put_object(prefix(), obj))
    assert got["point"] == obj["point"] and isinstance(got["point"], Point)
    assert got["local"].name == "here"


def test_arrow_tables_round_trip_natively_and_update_in_place(runtime) -> None:
    table = pa.table({"col1": [1, 2, 3], "col2": ["a", "b", "c"]})
    ref = put_object(prefix(), table)
    got = get_object(ref)
    assert isinstance(got, pa.Table) and got.to_pydict() == table.to_pydict()
    assert b"flame.cache.format" not in (got.schema.metadata or {})
    new = pa.table({"value": [4, 5], "label": ["x", "y"]})
    updated = update_object(ref, new)
    assert (updated.key, updated.version) == (ref.key, ref.version + 1)
    assert get_object(updated).to_pydict() == new.to_pydict()


def test_update_keeps_key_and_endpoint_and_bumps_version(runtime) -> None:
    ref = put_object(prefix(), {"count": 0})
    new = update_object(ref, {"count": 1})
    assert (new.key, new.endpoint, new.version) == (ref.key, ref.endpoint, 2)
    assert get_object(new) == {"count": 1}
    assert update_object(new, {"count": 2}).version == 3


def test_object_ref_encodes_and_decodes(runtime) -> None:
    ref = ObjectRef(endpoint="grpc://127.0.0.1:9090", key="app/ssn/obj", version=7)
    encoded = ref.encode()
    assert isinstance(encoded, bytes)
    back = ObjectRef.decode(encoded)
    assert (back.endpoint, back.key, back.version) == (ref.endpoint, ref.key, ref.version)


def test_patches_append_in_order_one_version_each(runtime) -> None:
    base = {"log": []}
    ref = put_object(prefix(), base)
    deltas = [{"i": i, "v": f"d{i}"} for i in range(5)]
    for i, delta in enumerate(deltas):
        patched = patch_object(ref, delta)
        assert (patched.key, patched.endpoint, patched.version) == (ref.key, ref.endpoint, ref.version + 1)
        ref = patched
        assert ref.version == i + 2
    assert get_object(ref, deserializer=raw) == {"base": base, "deltas": deltas}
    assert get_object(ref) == base  # without a deserializer: the base only


@pytest.mark.parametrize(
    "delta",
    [
        {"nested": {"deep": {"data": [1, 2, 3], "more": {"k": "v"}}}},
        {"binary": b"\x00\x01\x02\xff\xfe"},
        {"key": None, "list": [None, 1, None]},
        Point(1, ["WARN", "low memory"]),
    ],
    ids=["nested", "binary", "none", "object"],
)
def test_patch_payload_kinds_round_trip(runtime, delta: Any) -> None:
    ref = patch_object(put_object(prefix(), {"root": None}), delta)
    assert get_object(ref, deserializer=raw) == {"base": {"root": None}, "deltas": [delta]}


def test_many_patches_are_all_kept(runtime) -> None:
    ref = put_object(prefix(), {"counter": 0})
    for i in range(30):
        ref = patch_object(ref, i + 1)
    assert ref.version == 31
    assert get_object(ref, deserializer=raw)["deltas"] == list(range(1, 31))


def test_update_clears_patches_and_a_new_put_starts_clean(runtime) -> None:
    pre = prefix()
    ref = put_object(pre, {"v": 1})
    for i in range(3):
        ref = patch_object(ref, {"d": i})
    assert len(get_object(ref, deserializer=raw)["deltas"]) == 3
    ref = update_object(ref, {"v": 2})
    assert ref.version == 5
    assert get_object(ref, deserializer=raw) == {"base": {"v": 2}, "deltas": []}
    fresh = put_object(pre, {"new": True})
    assert get_object(fresh, deserializer=raw) == {"base": {"new": True}, "deltas": []}


def test_patching_a_missing_object_fails(runtime) -> None:
    endpoint = FlameContext().cache
    endpoint = (
        endpoint.get("endpoint") if isinstance(endpoint, dict) else getattr(endpoint, "endpoint", endpoint)
    )
    with pytest.raises(Exception, match="not found"):
        patch_object(ObjectRef(endpoint=endpoint, key="conf-cache/missing/none", version=0), {"d": 1})


def test_cached_client_fetches_only_the_patches_another_client_added(runtime) -> None:
    ref = put_object(prefix(), {"items": ["base"]})
    assert get_object(ref, deserializer=raw) == {"base": {"items": ["base"]}, "deltas": []}
    p1 = _other_client_put(ref, {"items": ["p1"]}, patch=True)
    fetched = fc._fetch_object_data(ref, ref.version)
    assert fetched.mode == fc.FetchMode.PATCHES and fetched.version == p1.version == 2
    assert [p.data for p in fetched.patches] == [{"items": ["p1"]}]
    assert get_object(ref, deserializer=raw)["deltas"] == [{"items": ["p1"]}]
    assert _local(ref).version == 2
    p2 = _other_client_put(ref, {"items": ["p2"]}, patch=True)
    fetched = fc._fetch_object_data(ref, _local(ref).version)
    assert fetched.mode == fc.FetchMode.PATCHES and fetched.version == p2.version == 3
    assert [p.data for p in fetched.patches] == [{"items": ["p2"]}]
    assert get_object(ref, deserializer=raw) == {
        "base": {"items": ["base"]},
        "deltas": [{"items": ["p1"]}, {"items": ["p2"]}],
    }
    assert [p.data for p in _local(ref).patches] == [{"items": ["p1"]}, {"items": ["p2"]}]


def test_version_zero_always_gets_base_and_every_patch(runtime) -> None:
    ref = put_object(prefix(), {"items": ["base"]})
    get_object(ref, deserializer=raw)
    patched = _other_client_put(ref, {"items": ["p1"]}, patch=True)
    zero = ObjectRef(endpoint=ref.endpoint, key=ref.key, version=0)
    fetched = fc._fetch_object_data(zero, 0)
    assert fetched.mode == fc.FetchMode.FULL and fetched.version == patched.version
    assert fetched.base == {"items": ["base"]} and [p.data for p in fetched.patches] == [{"items": ["p1"]}]
    assert get_object(zero, deserializer=raw) == {"base": {"items": ["base"]}, "deltas": [{"items": ["p1"]}]}


def test_stale_base_is_replaced_by_a_full_reply_after_another_clients_update(runtime) -> None:
    ref = put_object(prefix(), {"gen": 1})
    get_object(ref, deserializer=raw)
    updated = _other_client_put(ref, {"gen": 2}, patch=False)
    assert updated.version == 2
    fetched = fc._fetch_object_data(ref, ref.version)
    assert fetched.mode == fc.FetchMode.FULL and fetched.version == 2
    assert fetched.base == {"gen": 2} and fetched.patches == []
    assert get_object(ref, deserializer=raw) == {"base": {"gen": 2}, "deltas": []}
    local = _local(ref)
    assert (local.version, local.data, local.patches) == (2, {"gen": 2}, [])


def test_delete_by_prefix_removes_only_that_session(runtime) -> None:
    gone, kept = prefix(), prefix()
    refs = [put_object(gone, i) for i in range(3)]
    other = put_object(kept, "stays")
    delete_objects(gone)
    for ref in refs:
        with pytest.raises(Exception, match="not found"):
            get_object(ObjectRef(ref.endpoint, ref.key, 0))
    assert get_object(other) == "stays"


def test_many_writes_leave_every_object_retrievable_and_intact(runtime) -> None:
    pre = prefix()
    exact = {"s": "special chars: äöü", "f": 42.5, "l": [1, {"n": "v"}], "none": None, "b": True}
    first = put_object(pre, exact)
    hot = put_object(pre, {"type": "hot"})
    refs = []
    for i in range(12):
        refs.append(put_object(pre, {"seq": i, "pad": "x" * 100 * 1024}))
        if i % 3 == 0:
            assert get_object(hot) == {"type": "hot"}
    small = [put_object(pre, {"id": i, "pad": "y" * 1024}) for i in range(40)]
    big = put_object(pre, {"type": "large", "pad": "z" * 500 * 1024})
    updated = update_object(refs[0], {"seq": 0, "version": 2})
    assert get_object(first) == exact
    assert [get_object(r)["seq"] for r in refs[1:]] == list(range(1, 12))
    assert [get_object(r)["id"] for r in small] == list(range(40))
    assert get_object(big)["type"] == "large"
    assert get_object(updated) == {"seq": 0, "version": 2}


def test_two_sessions_objects_stay_apart(runtime) -> None:
    one, two = prefix(), prefix()
    refs1 = [put_object(one, {"s": 1, "i": i}) for i in range(4)]
    refs2 = [put_object(two, {"s": 2, "i": i}) for i in range(4)]
    assert [get_object(r) for r in refs1] == [{"s": 1, "i": i} for i in range(4)]
    assert [get_object(r) for r in refs2] == [{"s": 2, "i": i} for i in range(4)]
