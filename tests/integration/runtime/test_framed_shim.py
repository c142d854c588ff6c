"""The framed Instance shim: flamepy's servicer behind length-prefixed frames on a Unix socket."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from flamepy.core.service import FlameService, SessionContext, TaskContext
from flamepy.core.types import TaskOutput
from flamepy.proto import shim_pb2, types_pb2

from flame_local.executors import framed_shim
from tests.polling import wait_for


class Echo(FlameService):
    def __init__(self) -> None:
        self.entered: SessionContext | None = None
        self.left = False

    def on_session_enter(self, context: SessionContext) -> bool:
        self.entered = context
        return True

    def on_task_invoke(self, context: TaskContext) -> TaskOutput | None:
        if context.input == b"boom":
            raise ValueError("boom requested")
        if context.input == b"slow":
            time.sleep(2)
        return TaskOutput(b"echo:" + (context.input or b""))

    def on_session_leave(self) -> bool:
        self.left = True
        return True


def _serve(tmp_path: Path) -> tuple[Echo, str]:
    service = Echo()
    endpoint = str(tmp_path / "i.sock")
    threading.Thread(target=framed_shim.serve, args=(service, endpoint), daemon=True).start()
    path = endpoint + framed_shim.SUFFIX

    def listening() -> bool:  # bound before it listens: the runtime retries the same way
        try:
            framed_shim.FramedShimClient(path).close()
            return True
        except framed_shim.ShimTransportError:
            return False

    wait_for(listening, 10, "the framed socket")
    return service, path


def test_enter_invoke_leave_through_flamepys_servicer(tmp_path: Path) -> None:
    service, path = _serve(tmp_path)
    assert os.stat(path).st_mode & 0o077 == 0  # only its owner can connect
    client = framed_shim.FramedShimClient(path)
    ctx = shim_pb2.SessionContext(session_id="s1", common_data=b"cd")
    ctx.application.name = "app"
    assert client.enter(ctx, timeout=5).return_code == 0
    assert service.entered is not None and service.entered.session_id == "s1"
    assert service.entered.common_data() == b"cd" and service.entered.application.name == "app"
    result = client.invoke(shim_pb2.TaskContext(task_id="1", session_id="s1", input=b"x" * 3_000_000))
    assert result.return_code == 0 and result.output == b"echo:" + b"x" * 3_000_000
    failed = client.invoke(shim_pb2.TaskContext(task_id="2", session_id="s1", input=b"boom"))
    assert failed.return_code == -1 and "boom requested" in failed.message
    assert client.leave(timeout=5).return_code == 0 and service.left
    client.close()
    again = framed_shim.FramedShimClient(path)  # the instance serves the next connection
    assert again.invoke(shim_pb2.TaskContext(task_id="3", session_id="s1")).output == b"echo:"
    again.close()


def test_a_timeout_leaves_the_connection_unusable_not_out_of_step(tmp_path: Path) -> None:
    _, path = _serve(tmp_path)
    client = framed_shim.FramedShimClient(path)
    with pytest.raises(framed_shim.ShimTransportError, match="did not answer in time"):
        client._call(2, shim_pb2.TaskContext(task_id="1", input=b"slow"), types_pb2.TaskResult(), 0.2)
    with pytest.raises(framed_shim.ShimTransportError, match="unusable"):
        client.invoke(shim_pb2.TaskContext(task_id="2"))
    client.close()


def test_connecting_to_nothing_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(framed_shim.ShimTransportError, match="cannot connect"):
        framed_shim.FramedShimClient(str(tmp_path / "none.framed"))
