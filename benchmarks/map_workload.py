"""Map workload (not a test): 10,000 trivial items, each system with its own best map idiom, in items/s.

    python benchmarks/map_workload.py --systems flame,processpool,ray,dask,ipyparallel [--items 10000]

flame: ``svc.map`` (automatic chunks); ProcessPoolExecutor: ``map(chunksize=)``; Ray: a list of
``.remote`` then ``ray.get``; Dask: ``client.map`` then ``client.gather``; ipyparallel:
``view.map_sync``. Two workers each, loopback only; a peer not installed is reported as n/a
(install them with ``benchmarks/requirements-peers.txt``). Each system: one warm-up map of 100
items, then the best of ``--repeat`` timed maps (results checked).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

WORKERS = 2


def sq(x: int) -> int:
    return x * x


def _best(run: Callable[[list[int]], list[int]], n: int, repeat: int) -> float:
    run(list(range(100)))
    expected = [x * x for x in range(n)]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = run(list(range(n)))
        best = min(best, time.perf_counter() - t)
        assert out == expected, "wrong results"
    return n / best


def flame(n: int, repeat: int) -> float:
    import flame_jupyter as fj

    with fj.Runner("bench-map") as rr:
        svc = rr.service(sq)
        return _best(lambda xs: svc.map(xs).get(timeout=600), n, repeat)


def processpool(n: int, repeat: int) -> float:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(WORKERS) as ex:
        return _best(lambda xs: list(ex.map(sq, xs, chunksize=max(1, len(xs) // (4 * WORKERS)))), n, repeat)


def ray(n: int, repeat: int) -> float:
    import ray as ray_mod

    ray_mod.init(num_cpus=WORKERS, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        task = ray_mod.remote(sq)
        return _best(lambda xs: ray_mod.get([task.remote(x) for x in xs]), n, repeat)
    finally:
        ray_mod.shutdown()


def dask(n: int, repeat: int) -> float:
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=WORKERS, threads_per_worker=1, host="127.0.0.1") as cluster,
        Client(cluster) as c,
    ):
        return _best(lambda xs: c.gather(c.map(sq, xs, pure=False)), n, repeat)


def ipyparallel(n: int, repeat: int) -> float:
    import ipyparallel as ipp

    with ipp.Cluster(n=WORKERS, ip="127.0.0.1") as rc:
        view = rc.load_balanced_view()
        return _best(lambda xs: list(view.map_sync(sq, xs)), n, repeat)


SYSTEMS: dict[str, Callable[[int, int], float]] = {
    "flame": flame,
    "processpool": processpool,
    "ray": ray,
    "dask": dask,
    "ipyparallel": ipyparallel,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    results: dict[str, Any] = {}
    for name in [s.strip() for s in args.systems.split(",") if s.strip()]:
        try:
            results[name] = {"items_per_s": round(SYSTEMS[name](args.items, args.repeat))}
        except ImportError as e:
            results[name] = {"status": "n/a", "reason": f"not installed: {e.name}"}
        except Exception as e:  # noqa: BLE001 - report and go on with the next system
            results[name] = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
        print(name, results[name], flush=True)
    print(json.dumps({"items": args.items, "workers": WORKERS, "results": results}))


if __name__ == "__main__":
    main()
