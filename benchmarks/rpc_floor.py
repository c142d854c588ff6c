"""The floor under every flame figure: what one Python gRPC / Arrow Flight call costs here (not a test).

    python benchmarks/rpc_floor.py            # 3,000 calls each, prints a table
    python benchmarks/rpc_floor.py --json out.json

flamepy 0.6.0 makes each task cost at least four calls, whatever the runtime does: ``CreateTask``
(unary), ``WatchTask`` (server stream: running, then done), the executor's ``put_object`` of the
result (Flight ``DoPut``) and the client's ``get_object`` (Flight ``DoGet``). This measures those
shapes on this machine, against a trivial server in another process (the least any server can
cost) and against the embedded runtime: latency and the server's CPU per call. From them:
the W2 latency floor (four calls in a row) and the W3 throughput ceiling (their CPU on this
machine's cores), with nothing else running. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from typing import Any

import grpc
import psutil
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2


class _Trivial(frontend_pb2_grpc.FrontendServicer):
    def GetApplication(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        return types_pb2.Application()

    def WatchTask(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        yield types_pb2.Task()
        yield types_pb2.Task()


def _serve_trivial() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(16))
    frontend_pb2_grpc.add_FrontendServicer_to_server(_Trivial(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # until the parent closes it
    server.stop(0)


def _measure(call: Any, server: psutil.Process, n: int) -> dict[str, float]:
    for _ in range(min(200, n)):
        call()
    lat = []
    c0 = sum(server.cpu_times()[:2])
    for _ in range(n):
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    c1 = sum(server.cpu_times()[:2])
    return {
        "p50_ms": round(statistics.median(lat) * 1e3, 3),
        "server_cpu_ms": round((c1 - c0) / n * 1e3, 3),
    }


def trivial_server(n: int) -> dict[str, dict[str, float]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        stub = frontend_pb2_grpc.FrontendStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        server = psutil.Process(proc.pid)
        return {
            "unary": _measure(
                lambda: stub.GetApplication(frontend_pb2.GetApplicationRequest(name="x")), server, n
            ),
            "stream of 2": _measure(lambda: list(stub.WatchTask(frontend_pb2.WatchTaskRequest())), server, n),
        }
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)


def embedded_runtime(n: int) -> dict[str, dict[str, float]]:
    from flame_local.process import RuntimeProcess

    home = tempfile.mkdtemp(prefix="rpc-floor-home-")
    os.environ["HOME"] = home
    for key in [k for k in os.environ if k.startswith("FLAME_")]:
        del os.environ[key]
    rt = RuntimeProcess.start(max_instances=1)
    try:
        os.environ.update(rt.client_env())
        from flamepy.core import ObjectRef, get_object, put_object
        from flamepy.core.client import get_application

        server = psutil.Process(rt.pid)
        ref = put_object("floor/s1", 42)
        fresh = ObjectRef(endpoint=ref.endpoint, key=ref.key, version=0)
        return {
            "unary (GetApplication)": _measure(lambda: get_application("flmrun"), server, n),
            "Flight DoPut (put_object, small)": _measure(lambda: put_object("floor/s1", 1), server, n),
            "Flight DoGet (get_object, small)": _measure(lambda: get_object(fresh), server, n),
        }
    finally:
        rt.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--json")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        _serve_trivial()
        return 0
    res = {"trivial server": trivial_server(a.calls), "embedded runtime": embedded_runtime(a.calls)}
    cores = psutil.cpu_count() or 1
    t = res["trivial server"]
    four_calls_ms = 3 * t["unary"]["p50_ms"] + t["stream of 2"]["p50_ms"]
    cpu_per_task_ms = 3 * t["unary"]["server_cpu_ms"] + t["stream of 2"]["server_cpu_ms"]
    res["floor"] = {
        "w2_latency_floor_ms": round(four_calls_ms, 2),
        "server_cpu_per_task_ms": round(cpu_per_task_ms, 3),
        "w3_ceiling_tasks_per_s_server_side_only": round(cores * 1000 / cpu_per_task_ms),
        "cores": cores,
    }
    for where, rows in ((k, v) for k, v in res.items() if k != "floor"):
        print(where)
        for name, m in rows.items():
            print(f"  {name:<34} p50 {m['p50_ms']:6.3f} ms   server CPU {m['server_cpu_ms']:6.3f} ms/call")
    f = res["floor"]
    print(
        f"floor per task (3 unary-shaped calls + 1 two-message stream, trivial servers): "
        f"{f['w2_latency_floor_ms']} ms in a row; {f['server_cpu_per_task_ms']} ms of server CPU, "
        f"so at most {f['w3_ceiling_tasks_per_s_server_side_only']:,} tasks/s on {cores} cores "
        "counting server CPU alone (clients and executors need CPU too)"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
