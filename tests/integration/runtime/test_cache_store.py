"""CacheStore: Flame's key rules, version arithmetic, deletes, reply planning, thread safety."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from flame_local.cache.store import (
    CACHE_FORMAT_ARROW_TABLE,
    CACHE_FORMAT_METADATA_KEY,
    CACHE_VERSION_METADATA_KEY,
    CachedObject,
    CacheKeyError,
    CacheStateError,
    CacheStore,
    Delta,
    ObjectKey,
    ObjectNotFoundError,
    ReplyKind,
    join_buffers,
    plan_reply,
)


@pytest.fixture
def store() -> CacheStore:
    return CacheStore()


def native_table(values: list[int]) -> pa.Table:
    table = pa.table({"v": values})
    return table.replace_schema_metadata({CACHE_FORMAT_METADATA_KEY: CACHE_FORMAT_ARROW_TABLE, b"user": b"x"})


# -- keys -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/ssn", ObjectKey("app", "ssn")),
        ("app/ssn/obj", ObjectKey("app", "ssn", "obj")),
        ("app/*", ObjectKey("app", "*")),
        (
            "my-app/s.1/550e8400-e29b-41d4-a716-446655440000",
            ObjectKey("my-app", "s.1", "550e8400-e29b-41d4-a716-446655440000"),
        ),
    ],
)
def test_parse_accepts_valid_paths(path: str, expected: ObjectKey) -> None:
    assert ObjectKey.parse(path) == expected
    assert str(ObjectKey.parse(path)) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("app//obj", "Invalid key component: ''"),
        ("", "Invalid key component: ''"),
        ("app/ssn/", "Invalid key component: ''"),
        ("app/../obj", "Invalid key component: '..'"),
        ("app/s..x/obj", "Invalid key component: 's..x'"),
        ("app/ssn\\x/obj", "Invalid key component: 'ssn\\x'"),
        ("*/ssn", "Wildcard '*' only allowed for session_id"),
        ("app/ssn/*", "Wildcard '*' only allowed for session_id"),
        ("app/*/obj", "Wildcard session '*' cannot have object_id"),
        ("app", "Invalid path 'app': expected '<app>/<ssn>' or '<app>/<ssn>/<uuid>'"),
        ("a/b/c/d", "Invalid path 'a/b/c/d': expected '<app>/<ssn>' or '<app>/<ssn>/<uuid>'"),
    ],
)
def test_parse_rejects_bad_paths_with_flame_messages(path: str, message: str) -> None:
    with pytest.raises(CacheKeyError) as info:
        ObjectKey.parse(path)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_parse_key_requires_three_components() -> None:
    assert ObjectKey.parse_key("a/b/c").key == "a/b/c"
    with pytest.raises(CacheKeyError, match=r"^Invalid key 'a/b': expected '<app>/<ssn>/<uuid>'$"):
        ObjectKey.parse_key("a/b")
    with pytest.raises(CacheKeyError, match="Invalid key component"):
        ObjectKey.parse_key("a/../c")


def test_matches_scopes_prefix_and_wildcard_exactly() -> None:
    assert ObjectKey.parse("app/s").matches("app/s/1")
    assert not ObjectKey.parse("app/s").matches("app/s2/1")
    assert ObjectKey.parse("app/*").matches("app/s2/1")
    assert not ObjectKey.parse("app/*").matches("app2/s/1")
    assert ObjectKey.parse("app/s/1").matches("app/s/1")
    assert not ObjectKey.parse("app/s/1").matches("app/s/10")


# -- versions -------------------------------------------------------------------------------
def test_put_prefix_generates_new_keys_at_version_one(store: CacheStore) -> None:
    first = store.put("app/ssn", b"a")
    second = store.put("app/ssn", b"b")
    assert first.key != second.key
    assert first.key.startswith("app/ssn/") and len(first.key.split("/")[2]) == 36
    assert (first.version, second.version) == (1, 1)
    assert store.read_bytes(first.key) == b"a"


def test_put_full_key_new_then_replace(store: CacheStore) -> None:
    assert store.put("app/ssn/obj", b"v1").version == 1
    info = store.put("app/ssn/obj", b"v2")
    assert (info.key, info.version, info.size, info.delta_count) == ("app/ssn/obj", 2, 2, 0)
    assert store.read_bytes("app/ssn/obj") == b"v2"


def test_patch_is_current_plus_one_and_update_clears_deltas(store: CacheStore) -> None:
    key = store.put("app/ssn", b"base").key
    assert [store.patch(key, f"d{i}".encode()).version for i in range(3)] == [2, 3, 4]
    obj = store.get(key)
    assert (obj.version, obj.current_version) == (1, 4)
    assert [(d.version, d.data.to_pybytes()) for d in obj.deltas] == [(2, b"d0"), (3, b"d1"), (4, b"d2")]
    updated = store.put(key, b"new")
    assert (updated.version, updated.delta_count) == (5, 0)
    assert store.get(key).deltas == ()
    assert store.patch(key, b"d").version == 6


def test_patch_missing_object_is_not_found(store: CacheStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=r"^object <app/ssn/nope> not found for patch$"):
        store.patch("app/ssn/nope", b"x")
    with pytest.raises(CacheKeyError):
        store.patch("app/ssn", b"x")


def test_version_restarts_at_one_after_delete(store: CacheStore) -> None:
    store.put("app/ssn/obj", b"1")
    store.patch("app/ssn/obj", b"2")
    assert store.delete("app/ssn/obj") == 1
    assert store.put("app/ssn/obj", b"3").version == 1


def test_put_rejects_wildcard(store: CacheStore) -> None:
    with pytest.raises(CacheKeyError, match="Wildcard"):
        store.put("app/*", b"x")
    assert len(store) == 0


def test_native_table_carries_version_metadata(store: CacheStore) -> None:
    info = store.put_table("app/ssn", native_table([1, 2]))
    stored = store.get(info.key).table
    assert stored.schema.metadata[CACHE_VERSION_METADATA_KEY] == b"1"
    assert stored.schema.metadata[b"user"] == b"x"
    assert stored.column("v").to_pylist() == [1, 2]
    again = store.put_table(
        info.key, [b for b in native_table([3]).to_batches()], schema=native_table([3]).schema
    )
    assert again.version == 2
    assert store.get(info.key).table.schema.metadata[CACHE_VERSION_METADATA_KEY] == b"2"
    assert store.schema_of(info.key).metadata[CACHE_VERSION_METADATA_KEY] == b"2"
    opaque = store.put(info.key, b"now opaque")
    assert opaque.version == 3 and not store.get(info.key).is_native
    assert store.schema_of(info.key) is None


def test_read_bytes_errors_and_zero_copy(store: CacheStore) -> None:
    payload = pa.py_buffer(b"x" * 1000)
    key = store.put("app/ssn", payload).key
    assert store.read_buffer(key).address == payload.address
    with pytest.raises(ObjectNotFoundError, match=r"^object <app/ssn/none> not found$"):
        store.read_bytes("app/ssn/none")
    native_key = store.put_table("app/ssn", native_table([1])).key
    with pytest.raises(CacheStateError, match="expected opaque object payload"):
        store.read_bytes(native_key)


# -- deletes, stats ---------------------------------------------------------------------------
def test_delete_by_key_prefix_and_wildcard_counts(store: CacheStore) -> None:
    for path in ["app/s1", "app/s1", "app/s10", "app/s2", "app2/s1"]:
        store.put(path, b"x")
    key = store.put("app/s2", b"y").key
    assert store.delete(key) == 1
    assert store.delete(key) == 0
    assert store.delete("app/s1") == 2
    assert store.delete("app/*") == 2
    assert store.delete("app/*") == 0
    assert [i.key.split("/")[0] for i in store.list_objects()] == ["app2"]
    with pytest.raises(CacheKeyError):
        store.delete("*/s1")


def test_stats_and_clear(store: CacheStore) -> None:
    key = store.put("app/ssn", b"12345").key
    store.patch(key, b"678")
    store.put("app/ssn", b"90")
    stats = store.stats()
    assert (stats.objects, stats.bytes) == (2, 10)
    assert store.clear() == 2
    assert store.stats().objects == 0 and store.stats().bytes == 0 and key not in store


def test_join_buffers_copies_only_when_needed() -> None:
    one = pa.py_buffer(b"abc")
    assert join_buffers([one]) is one
    joined = join_buffers([pa.py_buffer(b"ab"), b"cd", pa.py_buffer(b"e")])
    assert joined.to_pybytes() == b"abcde"
    assert join_buffers([]).size == 0


# -- reply planning ---------------------------------------------------------------------------
def opaque(version: int, delta_versions: list[int]) -> CachedObject:
    deltas = tuple(Delta(v, pa.py_buffer(f"p{v}".encode())) for v in delta_versions)
    return CachedObject("a/s/o", version, data=pa.py_buffer(b"base"), deltas=deltas)


@pytest.mark.parametrize(
    ("base", "deltas", "client", "kind", "patches"),
    [
        (1, [2, 3], 3, ReplyKind.NOT_MODIFIED, []),
        (1, [2, 3], 1, ReplyKind.PATCHES, [2, 3]),
        (1, [2, 3], 2, ReplyKind.PATCHES, [3]),
        (1, [2, 3], 0, ReplyKind.FULL, [2, 3]),
        (1, [2, 3], 99, ReplyKind.FULL, [2, 3]),
        (4, [], 1, ReplyKind.FULL, []),  # base replaced after the client's copy
        (1, [2, 4], 2, ReplyKind.FULL, [2, 4]),  # gap: missing deltas not contiguous
        (5, [], 0, ReplyKind.FULL, []),
    ],
)
def test_plan_reply(base: int, deltas: list[int], client: int, kind: ReplyKind, patches: list[int]) -> None:
    reply = plan_reply(opaque(base, deltas), client)
    assert reply.kind is kind
    assert [d.version for d in reply.patches] == patches


def test_plan_reply_native(store: CacheStore) -> None:
    key = store.put_table("a/s", native_table([1])).key
    assert store.reply_for(key, 0).kind is ReplyKind.NATIVE
    assert store.reply_for(key, 1).kind is ReplyKind.NOT_MODIFIED
    assert store.reply_for(key, 7).kind is ReplyKind.NATIVE


def test_reply_for_incremental_flow(store: CacheStore) -> None:
    key = store.put("a/s", b"base").key
    store.patch(key, b"p2")
    reply = store.reply_for(key, 1)
    assert reply.kind is ReplyKind.PATCHES and [d.data.to_pybytes() for d in reply.patches] == [b"p2"]
    store.put(key, b"new")
    assert store.reply_for(key, 2).kind is ReplyKind.FULL


# -- concurrency ------------------------------------------------------------------------------
def test_concurrent_patches_get_unique_contiguous_versions(store: CacheStore) -> None:
    key = store.put("a/s", b"base").key
    threads, per_thread = 8, 50
    seen: list[int] = []
    seen_lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            version = store.patch(key, b"d").version
            with seen_lock:
                seen.append(version)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in pool)
    expected = list(range(2, threads * per_thread + 2))
    assert sorted(seen) == expected
    assert [d.version for d in store.get(key).deltas] == expected


def test_concurrent_prefix_puts_and_deletes_stay_consistent(store: CacheStore) -> None:
    keys: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(100):
            info = store.put(f"app/s{n}", str(i).encode())
            with lock:
                keys.append(info.key)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    assert len(set(keys)) == 400 and len(store) == 400
    assert store.delete("app/s0") == 100
    assert store.delete("app/*") == 300
