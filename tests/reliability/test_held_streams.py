"""Round 2, fault 3: 300 open WatchTask streams must not freeze the runtime.

Flame serves with tonic (async): an open stream holds no thread. The runtime's frontend is a
grpc.aio server whose streams are async generators; unary calls run on their own thread pool.
The watched tasks stay pending for good (their application cannot start, and Flame leaves such
tasks pending), so every stream stays open for the whole test.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from flamepy.proto import frontend_pb2, frontend_pb2_grpc, types_pb2

from tests.reliability.relkit import RuntimeChild, client_env, report, run_client

STREAMS = 300
CHANNELS = 30  # ~ 30 kernels with 10 watches each

NEW_CLIENT = """
import json, time
import flame_jupyter as fj
t0 = time.monotonic()
with fj.Runner("held-streams-new") as rr:
    value = rr.service(abs)(-7).get(timeout=60)
print("RESULT " + json.dumps({"value": value, "seconds": round(time.monotonic() - t0, 2)}))
"""


def test_300_held_watches_leave_unary_calls_and_new_clients_working(tmp_path: Path) -> None:
    rt = RuntimeChild(settings={"max_instances": 2}).start()
    target = rt.endpoint.removeprefix("http://")
    channels = [grpc.insecure_channel(target) for _ in range(CHANNELS)]
    streams: list[grpc.Future] = []
    try:
        stub = frontend_pb2_grpc.FrontendStub(channels[0])
        app = types_pb2.ApplicationSpec(command="/bin/false")
        assert (
            stub.RegisterApplication(
                frontend_pb2.RegisterApplicationRequest(name="held", application=app), timeout=10
            ).return_code
            == 0
        )
        stub.CreateSession(
            frontend_pb2.CreateSessionRequest(
                session_id="held-1", session=types_pb2.SessionSpec(application="held")
            ),
            timeout=10,
        )
        task_ids = [
            stub.CreateTask(
                frontend_pb2.CreateTaskRequest(task=types_pb2.TaskSpec(session_id="held-1", input=b"x")),
                timeout=10,
            ).metadata.id
            for _ in range(STREAMS)
        ]
        opened = 0
        for i, tid in enumerate(task_ids):
            s = frontend_pb2_grpc.FrontendStub(channels[i % CHANNELS]).WatchTask(
                frontend_pb2.WatchTaskRequest(session_id="held-1", task_id=tid), timeout=120
            )
            streams.append(s)
            opened += 1
        time.sleep(1.0)  # let every stream reach the server
        assert all(s.is_active() for s in streams)

        latencies = []
        for _ in range(10):
            t0 = time.monotonic()
            frontend_pb2_grpc.FrontendStub(channels[0]).ListSession(
                frontend_pb2.ListSessionRequest(), timeout=5
            )
            latencies.append(time.monotonic() - t0)
        fresh = grpc.insecure_channel(target)
        t0 = time.monotonic()
        frontend_pb2_grpc.FrontendStub(fresh).ListSession(frontend_pb2.ListSessionRequest(), timeout=5)
        fresh_latency = time.monotonic() - t0
        fresh.close()
        assert max(latencies) < 1.0, latencies
        assert fresh_latency < 1.0, fresh_latency

        result = run_client(tmp_path, client_env(rt.client_env(), tmp_path), NEW_CLIENT, timeout=90)
        assert result["value"] == 7
        assert all(s.is_active() for s in streams)  # still held while all that ran
        report(
            "held watch streams",
            streams=opened,
            list_session_max_s=round(max(latencies), 4),
            list_session_new_channel_s=round(fresh_latency, 4),
            new_sdk_client_s=result["seconds"],
        )
    finally:
        for s in streams:
            s.cancel()
        for ch in channels:
            ch.close()
        rt.stop()
