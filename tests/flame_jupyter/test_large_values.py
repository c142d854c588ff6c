"""Large values as arguments and results: bit-exact on every path a large result can take.

Results of 1 MiB or more leave the executor as pickle protocol 5 parts in the object cache
(``remote/large.py``): over Flight, or, when the kernel started the embedded runtime, as a file of
the cache's storage that the kernel memory-maps; when neither works, the value goes runpy's way.
Each test runs a real script (real flamepy, gRPC, Flight, the stock runpy service) and counts
which path the kernel decoded (``results.resolve_large``: called with the file's path or "").
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.flame_jupyter.test_sdk import run_script

VALUES = """
import os, sys
import numpy as np, pandas as pd, pyarrow as pa
from flame_jupyter import results

paths = []
_resolve = results.resolve_large
def _counting(*a):
    paths.append(a[4] if len(a) > 4 else "")
    return _resolve(*a)
results.resolve_large = _counting

def echo(x):
    return x

def describe(x):
    import hashlib, numpy as np
    return (type(x).__name__, str(x.dtype), x.shape, hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())

def backing(x):
    import numpy as np
    b = x
    while isinstance(b, np.ndarray) and b.base is not None:
        b = b.base
    if isinstance(b, memoryview):
        b = b.obj
    return type(b).__name__, x.flags.writeable

def bump(x):
    x[0] += 1
    return float(x[0])

def arguments(r):
    arr = np.zeros(1 << 18)
    print("argument", *r.service(backing)(arr).get())
    svc = r.service(bump)
    print("mutated", svc(arr).get(), svc(arr).get(), arr[0])
    raw = os.urandom(3 << 20)
    got = r.service(view_of)(raw).get()  # cloudpickle sends a memoryview as its bytes (as before)
    print("memoryview result", type(got).__name__, got == raw)
    try:
        r.service(echo)(memoryview(raw))
    except fj.CaptureError as e:  # dill cannot pickle one: refused in the kernel, nothing sent
        print("memoryview argument refused", "memoryview" in str(e))

def view_of(b):
    return memoryview(b)

def values():
    rng = np.random.default_rng(1)
    big = rng.random(300_000)
    return {
        "float": big,
        "fortran": np.asfortranarray(rng.random((600, 500))),
        "strided": rng.random(900_000)[::3],
        "object": np.array([f"s{i}" for i in range(200_000)], dtype=object),
        "zero_d": (np.float64(3.5), np.array(7.25), big),
        "structured": np.zeros(100_000, dtype=[("a", "i4"), ("b", "f8"), ("c", "S3")]),
        "frame": pd.DataFrame({
            "i": np.arange(100_000), "f": rng.random(100_000), "s": [f"r{i}" for i in range(100_000)],
            "t": pd.date_range("2020-01-01", periods=100_000, freq="s"),
            "c": pd.Categorical(["a", "b"] * 50_000)}),
        "series": pd.Series(rng.random(200_000), name="x"),
        "arrow": pa.table({"a": pa.array(np.arange(300_000)), "b": pa.array([str(i) for i in range(300_000)])}),
        "bytes": os.urandom(3 << 20),
        "bytearray": bytearray(os.urandom(3 << 20)),
        "nested": {"list": [rng.random(100_000), {"t": (rng.integers(0, 9, 200_000), b"x")}], "k": 1},
    }

def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return a.tolist() == b.tolist()
        layout = a.flags.c_contiguous == b.flags.c_contiguous and a.flags.f_contiguous == b.flags.f_contiguous
        return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes() and (
            layout or not (a.flags.c_contiguous or a.flags.f_contiguous))
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.dtypes) == list(b.dtypes) and list(a.columns) == list(b.columns)
    if isinstance(a, pd.Series):
        return a.equals(b) and a.dtype == b.dtype and a.name == b.name
    if isinstance(a, pa.Table):
        return a.equals(b, check_metadata=True)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return a == b

def round_trip(r):
    svc, desc = r.service(echo), r.service(describe)
    for name, v in values().items():
        paths.clear()
        got = svc(v).get()
        print(name, same(v, got), "file" if paths and paths[0] else "flight" if paths else "runpy")
    arr = values()["fortran"]
    print("described", desc(arr).get() == describe(arr))
"""


def _rows(out: list[str]) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out:
        name, *rest = line.split()
        if len(rest) == 2 and rest[1] in ("file", "flight", "runpy"):
            rows[name] = (rest[0], rest[1])
    return rows


def test_large_values_round_trip_over_flight(tmp_path: Path, script_env: dict[str, str]) -> None:
    # The script reaches the runtime by endpoint (not its own runtime): results go over Flight.
    body = VALUES + textwrap.dedent(
        """
        with fj.Runner("large-flight") as r:
            round_trip(r)
            arguments(r)
        """
    )
    out = run_script(tmp_path, script_env, body, timeout=300)
    rows = _rows(out)
    assert set(rows) == {
        "float", "fortran", "strided", "object", "zero_d", "structured", "frame", "series", "arrow",
        "bytes", "bytearray", "nested",
    }, out  # fmt: skip
    assert all(ok == "True" for ok, _ in rows.values()), out
    assert all(path == "flight" for _, path in rows.values()), out
    assert "described True" in out
    assert "argument bytearray True" in out  # fetched over Flight, copied: the call's own
    assert "memoryview result bytes True" in out
    assert "memoryview argument refused True" in out
    assert "mutated 1.0 1.0 0.0" in out


def test_large_values_round_trip_through_the_cache_file(tmp_path: Path, script_env: dict[str, str]) -> None:
    # A script that starts its own embedded runtime: large results are the cache's files, mapped.
    env = {k: v for k, v in script_env.items() if k not in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT")}
    body = VALUES + textwrap.dedent(
        """
        fj.connect(embedded=True, max_instances=1)
        from flame_jupyter.connection import current
        storage = current().runtime.cache_storage
        with fj.Runner("large-file") as r:
            round_trip(r)
            arguments(r)
            f = r.service(echo)(np.arange(1 << 18))
            v = f.get()
            print("file held", os.path.exists(paths[-1]), paths[-1].startswith(storage))
            print("writable", v.flags.writeable)
            print("nested", r.service(describe)(f).get() == describe(v))
            import gc, time
            held = paths[-1]
            del f
            gc.collect()
            print("shared kept", os.path.exists(held))  # it was passed on: never released early
            kept = r.service(echo)(np.arange(1 << 18))
            kept.ref()
            kept.get()
            kept_path = paths[-1]
            v = r.service(echo)(np.arange(1 << 18)).get()  # its future is gone at once
            gone = paths[-1]
            deadline = time.monotonic() + 20
            while os.path.exists(gone) and time.monotonic() < deadline:
                gc.collect()
                time.sleep(0.05)
            print("released", not os.path.exists(gone), int(v.sum()) == (1 << 18) * ((1 << 18) - 1) // 2)
            del kept
            gc.collect()
            time.sleep(0.5)
            print("ref kept", os.path.exists(kept_path))
        print("file after close", os.path.exists(paths[-1]))
        print("storage left", sorted(p for p, _, files in os.walk(storage) if files))
        fj.disconnect()
        """
    )
    out = run_script(tmp_path, env, body, timeout=300)
    rows = _rows(out)
    assert all(ok == "True" for ok, _ in rows.values()), out
    assert all(path == "file" for _, path in rows.values()), out
    assert "described True" in out
    assert "file held True True" in out
    assert "writable True" in out  # a private copy-on-write map of the file, as a local result
    assert "argument mmap True" in out  # the kernel's file of the argument, mapped the same way
    assert "mutated 1.0 1.0 0.0" in out  # each call's own copy
    assert "nested True" in out  # a large result passed on as an argument is read on the executor
    assert "shared kept True" in out
    assert "released True True" in out  # an unshared future's parts go once it is collected
    assert "ref kept True" in out  # a future whose ref() was taken keeps them
    assert "file after close False" in out
    assert "storage left []" in out


def test_large_result_falls_back_to_flight_when_the_storage_is_not_on_this_host(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    # The call names a storage dir the executor cannot see (another host): the result goes over
    # Flight; a dir that exists but is not the cache's: the cache does not hold the file, Flight too.
    body = VALUES + textwrap.dedent(
        """
        from flame_jupyter import calls
        for storage in ("/nonexistent/flame-storage", os.getcwd()):
            calls._cache_storage = lambda storage=storage: storage
            with fj.Runner("large-fallback") as r:
                paths.clear()
                v = np.random.default_rng(2).random(1 << 18)
                print("fallback", same(r.service(echo)(v).get(), v), repr(paths))
        print("left", sorted(f for _, _, files in os.walk(os.getcwd()) for f in files if ".arrow" in f))
        """
    )
    out = run_script(tmp_path, script_env, body, timeout=300)
    assert out.count("fallback True ['']") == 2, out
    assert "left []" in out, out


def test_large_result_goes_runpys_way_when_the_cache_cannot_take_it(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    # Nothing listens on the cache endpoint, or the value cannot be pickled here: the executor's
    # encoder hands the value back unchanged (runpy then caches it, or fails, as it always did).
    env = dict(script_env, FLAME_CACHE_ENDPOINT="grpc://127.0.0.1:9")
    body = textwrap.dedent(
        """
        import threading
        import numpy as np
        from flame_jupyter.remote.large import LargeResult, encode_result
        call = {"id": "x", "stream": "app/ssn/fj-x-out", "cancel": "app/ssn/fj-x-cancel"}
        v = np.ones(1 << 18)
        print("unreachable", encode_result(call, v) is v)
        odd = [v, threading.Lock()]
        print("unpicklable", encode_result(call, odd) is odd)
        print("small", encode_result(call, np.ones(10)).shape)
        print("no channel", encode_result(None, v) is v)
        """
    )
    out = run_script(tmp_path, env, body, timeout=120)
    assert out[:4] == ["unreachable True", "unpicklable True", "small (10,)", "no channel True"], out
