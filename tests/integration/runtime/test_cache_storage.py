"""The cache's storage directory (Flame's ``cache.storage`` disk layout), read through on a miss.

A same-host writer puts a native Arrow object by writing ``<storage>/<app>/<ssn>/<id>.arrow``
and asking ``GetFlightInfo`` for its key (flamepy's ``put_object`` with ``FLAME_CACHE_STORAGE``
does exactly that); the cache then holds it, memory-mapped, and deleting it deletes the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import flamepy.core.cache as flame_cache
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flamepy.core.cache import delete_objects, get_object, put_object

from flame_local.cache.server import CacheServer
from flame_local.cache.storage import DiskStorage
from flame_local.cache.store import CacheStore

NATIVE = {b"flame.cache.format": b"arrow-table-v1", b"flame.cache.version": b"1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CacheServer]:
    store = CacheStore(spill_dir=tmp_path / "spill")
    srv = CacheServer(store, port=0, storage=DiskStorage(tmp_path / "storage")).start()
    try:
        yield srv
    finally:
        srv.stop()


def write(root: Path, key: str, table: pa.Table) -> Path:
    path = root / (key + ".arrow")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as writer:
        writer.write_table(table)
    return path


def test_a_file_named_by_get_flight_info_is_an_object_until_deleted(
    server: CacheServer, tmp_path: Path
) -> None:
    client = flight.FlightClient(server.endpoint)
    table = pa.table({"part": pa.array([b"x" * 10, b"y" * (1 << 20)], pa.large_binary())})
    path = write(tmp_path / "storage", "app/ssn/obj-1", table.replace_schema_metadata(NATIVE))
    info = client.get_flight_info(flight.FlightDescriptor.for_path("app/ssn/obj-1"))
    assert info.schema.names == ["part"]
    assert info.endpoints[0].locations[0].uri.decode() == server.endpoint
    got = client.do_get(flight.Ticket(b"app/ssn/obj-1:0")).read_all()
    assert got.column("part").to_pylist() == table.column("part").to_pylist()
    assert got.schema.metadata[b"flame.cache.version"] == b"1"
    assert server.store.list_objects()[0].key == "app/ssn/obj-1"
    assert path.exists()
    list(client.do_action(flight.Action("DELETE", b"app/ssn")))
    assert not path.exists()
    with pytest.raises(flight.FlightError):
        client.do_get(flight.Ticket(b"app/ssn/obj-1:0")).read_all()


def test_files_that_are_not_native_objects_are_not_read(server: CacheServer, tmp_path: Path) -> None:
    client = flight.FlightClient(server.endpoint)
    write(tmp_path / "storage", "app/ssn/plain", pa.table({"version": pa.array([0], pa.uint64())}))
    (tmp_path / "storage" / "app" / "ssn" / "junk.arrow").write_bytes(b"not arrow")
    for key in ("app/ssn/plain", "app/ssn/junk"):
        assert client.get_flight_info(flight.FlightDescriptor.for_path(key)).schema.names == []
        with pytest.raises(flight.FlightError):
            client.do_get(flight.Ticket(f"{key}:0".encode())).read_all()
    assert len(server.store) == 0
    list(client.do_action(flight.Action("DELETE", b"app/*")))  # files never read go with their app
    assert not (tmp_path / "storage" / "app").exists()


def test_flamepy_put_object_with_a_cache_storage(
    server: CacheServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # flamepy's own local-write path (cache.py L864-897) against this cache's storage.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLAME_CACHE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("FLAME_CACHE_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("FLAME_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setattr(flame_cache, "_context_cache", None)
    with flame_cache._cache_lock:
        flame_cache._object_cache.clear()
    table = pa.table({"a": [1, 2, 3]})
    ref = put_object("app/ssn", table)
    assert ref.version == 1 and ref.endpoint == server.endpoint
    assert list((tmp_path / "storage" / "app" / "ssn").iterdir())  # written locally, not uploaded
    assert get_object(ref).equals(table)
    delete_objects("app/ssn")
    assert not list((tmp_path / "storage" / "app" / "ssn").glob("*.arrow"))


def test_the_runtimes_storage_is_on_tmpfs_and_goes_with_it(flame_home: Path) -> None:
    from flame_local import LocalRuntime, shm_storage

    rt = LocalRuntime(max_instances=1).start()
    try:
        storage = Path(rt.cache_storage)
        assert storage.is_dir()
        if shm_storage._is_tmpfs(shm_storage.SHM):  # where large results are written at memory speed
            assert storage.parent == shm_storage.parent() and storage.name.startswith(f"fls-{os.getpid()}-")
        (storage / "leftover.arrow").write_bytes(b"x")
    finally:
        rt.stop()
    assert not storage.exists() or storage == rt.home / "storage"
