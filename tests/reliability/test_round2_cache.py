"""Round 2, fault 8: the object cache has a byte budget (LRU spill to disk under the runtime home),
a per-object limit and a disk limit, each refused with a clear error."""

from __future__ import annotations

import os
import stat
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.reliability.relkit import RssSampler, RuntimeChild, report, rss_mb

MB = 1 << 20
SCHEMA = pa.schema(
    [pa.field("version", pa.uint64(), nullable=False), pa.field("data", pa.binary(), nullable=False)]
)


def _payload(i: int, size: int = MB) -> bytes:
    head = f"object-{i:06d}:".encode()
    return head + bytes([i % 251]) * (size - len(head))


def _put(client: flight.FlightClient, prefix: str, data: bytes) -> str:
    import bson

    table = pa.table(
        {"version": pa.array([0], pa.uint64()), "data": pa.array([data], pa.binary())}, schema=SCHEMA
    )
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(prefix), table.schema)
    writer.write_table(table)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return bson.decode(meta.to_pybytes())["key"]


def _get(client: flight.FlightClient, key: str) -> bytes:
    table = client.do_get(flight.Ticket(f"{key}:0".encode())).read_all()
    return b"".join(v.as_py() for v in table.column("data"))


def test_1000_results_of_1mb_stay_within_a_200mb_budget() -> None:
    with RuntimeChild({"max_instances": 1, "warm_instances": 0, "cache_budget": 200 * MB}) as rt:
        client = flight.FlightClient(rt.cache_endpoint)
        idle = rss_mb(rt.pid)
        keys = []
        t = time.monotonic()
        with RssSampler({"runtime": lambda: [rt.pid]}, interval=0.1) as rss:
            for i in range(1000):
                keys.append(_put(client, "budget-app/ssn-1", _payload(i)))
        put_s = time.monotonic() - t
        t = time.monotonic()
        latest = [_get(client, keys[i]) == _payload(i) for i in range(990, 1000)]
        oldest = [_get(client, keys[i]) == _payload(i) for i in range(10)]
        get_s = time.monotonic() - t
        spill = rt.home / "cache"
        files = list(spill.iterdir())
        modes = {oct(stat.S_IMODE(os.stat(p).st_mode)) for p in files}
        spill_mode = oct(stat.S_IMODE(os.stat(spill).st_mode))
        client.close()
    assert all(latest) and all(oldest), (latest, oldest)
    assert rss.peak["runtime"] < idle + 200 + 150, (idle, rss.peak)
    assert get_s < 10, get_s
    assert len(files) >= 790 and modes == {"0o600"} and spill_mode == "0o700", (len(files), modes, spill_mode)
    report("cache-budget", objects=1000, object_mb=1, budget_mb=200, idle_mb=round(idle), peak_mb=round(rss.peak["runtime"]),
           spilled_files=len(files), put_s=round(put_s, 1), get_20_s=round(get_s, 2))  # fmt: skip


def test_an_object_over_the_per_object_limit_is_refused() -> None:
    with RuntimeChild({"max_instances": 1, "warm_instances": 0, "cache_max_object": 8 * MB}) as rt:
        client = flight.FlightClient(rt.cache_endpoint)
        ok = _put(client, "limit-app/ssn", _payload(1, 8 * MB - 1024))
        with pytest.raises(flight.FlightError) as err:
            _put(client, "limit-app/ssn", _payload(2, 9 * MB))
        listed = [f.descriptor.path[0].decode() for f in client.list_flights()]
        client.close()
    assert "exceeds the object cache's per-object limit of 8 MiB" in str(err.value), err.value
    assert listed == [ok]
    report("cache-object-limit", limit_mb=8, refused_mb=9, error=str(err.value).split(". Detail")[0][:160])


def test_a_full_cache_refuses_with_a_clear_error() -> None:
    settings = {"max_instances": 1, "warm_instances": 0, "cache_budget": 8 * MB, "cache_disk_budget": 16 * MB}
    with RuntimeChild(settings) as rt:
        client = flight.FlightClient(rt.cache_endpoint)
        stored, error = 0, ""
        for i in range(60):
            try:
                _put(client, "full-app/ssn", _payload(i))
                stored += 1
            except flight.FlightError as e:
                error = str(e)
                break
        client.close()
    assert 20 <= stored <= 26, stored
    assert "object cache is full" in error, error
    report("cache-full", memory_mb=8, disk_mb=16, stored=stored, error=error.split(". Detail")[0][:160])
