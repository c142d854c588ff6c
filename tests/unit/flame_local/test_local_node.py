"""The embedded runtime's node (ListNodes/GetNode) counts GPUs as Flame v0.6.0's node does."""

from __future__ import annotations

import os

import pytest

from flame_local.servers.frontend import _local_node


@pytest.mark.parametrize(("visible", "gpus"), [("0,1", 2), ("3", 1), ("", 0), ("-1", 0)])
def test_cuda_visible_devices_decides_the_gpu_count(
    monkeypatch: pytest.MonkeyPatch, visible: str, gpus: int
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    node = _local_node()
    assert node.status.capacity.gpu == node.status.allocatable.gpu == gpus


def test_without_the_variable_the_driver_lists_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    try:
        expected = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        expected = 0
    assert _local_node().status.capacity.gpu == expected
    assert _local_node().status.capacity.cpu == os.cpu_count()
