"""Resource requests no Flame node can hold are refused at submit time, in a real kernel.

The runtime reports this machine as its one node over Flame's ``ListNodes`` (cpu count, total
memory); asking for more than that must fail at once, name the request and the capacity, and leave
no session behind (on Flame v0.6.0 such a session's tasks wait forever).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

from tests.guide import GUIDE_DEFS
from tests.kernel_helpers import KernelSession

CPUS = os.cpu_count() or 1
MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
TOO_MANY_CPUS = CPUS * 4
TOO_MUCH_MEMORY_GI = math.ceil(MEMORY / 2**30) * 2


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    env = {"HOME": str(tmp_path_factory.mktemp("khome")), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("kcwd"), extra_env=env) as k:
        assert k.run("%load_ext flame_jupyter").status == "ok"
        k.run(GUIDE_DEFS + "\nimport flamepy\nfrom flamepy.core.types import ResourceRequirement")
        yield k


def _sessions(k: KernelSession) -> int:
    return k.value("len(flamepy.list_sessions())")


def _refused(k: KernelSession, code: str, request: str) -> str:
    """The error's text (IPython prints a magic's UsageError to stderr, as ``UsageError: ...``)."""
    before = _sessions(k)
    r = k.execute(code, timeout=60)
    assert r.status == "error", (code, r.stdout, r.text)
    message = f"{r.error['ename']}: {r.error['evalue']}" if r.error else r.stderr
    assert request in message, message
    assert f"{CPUS} CPU" in message and "GiB" in message, message  # the capacity, said
    assert _sessions(k) == before, "a session was left behind"
    return message


def test_cell_asking_for_more_cpus_than_any_node_is_refused(kernel: KernelSession) -> None:
    err = _refused(kernel, f"%%flame --cpu {TOO_MANY_CPUS}\n1", f"cpu={TOO_MANY_CPUS}")
    assert err.startswith("UsageError: %%flame asks for"), err


def test_cell_asking_for_more_memory_than_any_node_is_refused(kernel: KernelSession) -> None:
    _refused(kernel, f"%%flame --memory {TOO_MUCH_MEMORY_GI}Gi\n1", f"memory={TOO_MUCH_MEMORY_GI} GiB")


def test_service_asking_too_much_is_refused_and_not_bound(kernel: KernelSession) -> None:
    _refused(kernel, f"%flame_service --cpu {TOO_MANY_CPUS} too_big = sum_fn", f"cpu={TOO_MANY_CPUS}")
    assert kernel.value("'too_big' in globals()") is False


def test_sdk_resources_too_large_raise_a_typed_error(kernel: KernelSession) -> None:
    kernel.run("import flame_jupyter.errors\nsdk_runner = flame_jupyter.Runner('resources-sdk')")
    try:
        err = _refused(
            kernel,
            f"sdk_runner.service(sum_fn, resources=ResourceRequirement(cpu=1, memory={TOO_MUCH_MEMORY_GI} * 2**30))",
            f"memory={TOO_MUCH_MEMORY_GI} GiB",
        )
        assert err.startswith("ResourceRequestError: service 'sum_fn' asks for"), err
        assert kernel.value("issubclass(flame_jupyter.errors.ResourceRequestError, ValueError)") is True
    finally:
        kernel.run("sdk_runner.close()")


def test_sdk_gpus_no_node_has_are_refused(kernel: KernelSession) -> None:
    if kernel.value("max(n.status.allocatable.gpu for n in flamepy.list_nodes())") > 0:
        pytest.skip("this machine's node has GPUs")
    kernel.run("gpu_runner = flame_jupyter.Runner('resources-gpu')")
    try:
        err = _refused(
            kernel,
            "gpu_runner.service(sum_fn, resources=ResourceRequirement(cpu=1, memory=2**30, gpu=1))",
            "gpu=1",
        )
        assert "0 GPUs" in err, err
    finally:
        kernel.run("gpu_runner.close()")


def test_requests_that_fit_still_run(kernel: KernelSession) -> None:
    r = kernel.execute(f"%%flame --cpu {CPUS} --memory 512Mi\n6 * 7", timeout=120)
    assert r.status == "ok", r.error_text()
    assert kernel.value("_.get(timeout=60)") == 42
