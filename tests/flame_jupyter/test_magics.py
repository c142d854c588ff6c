"""The magics in a real IPython kernel (jupyter_client) against the embedded runtime."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guide import GUIDE_DEFS
from tests.kernel_helpers import KernelSession


def _kernel_env(home: Path, runtime=None) -> dict[str, str]:
    env = {"HOME": str(home)}
    if runtime is not None:
        env.update(runtime.client_env())
    else:  # the extension must start its own embedded runtime
        env.update({"FLAME_ENDPOINT": "", "FLAME_CACHE_ENDPOINT": ""})
    return env


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    home = tmp_path_factory.mktemp("khome")
    with KernelSession(cwd=tmp_path_factory.mktemp("kcwd"), extra_env=_kernel_env(home, runtime)) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at http://127.0.0.1:"), r.stdout
        k.run(GUIDE_DEFS)
        yield k


def val(k: KernelSession, code: str):
    """Run the statements of ``code``, then return the JSON value of its last expression."""
    lines = code.split("\n")
    if ";" in lines[-1]:
        head, last = lines[-1].rsplit(";", 1)
        lines[-1] = head
    else:
        last = lines.pop()
    if any(line.strip() for line in lines):
        ok(k, "\n".join(lines))
    return k.value(last.strip())


def ok(k: KernelSession, code: str, timeout: float = 120):
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r


def test_runner_guide_with_magics(kernel: KernelSession) -> None:
    ok(kernel, "%flame_service sum_service = sum_fn")
    assert val(kernel, "sum_service(1, 3).get()") == 4
    ok(kernel, "%flame_service cnt_s = Counter")
    # A class service autoscales: Flame gives the burst an instance (and a Counter) per call.
    assert val(kernel, "cnt_s.add(1); cnt_s.add(3); cnt_s.get_counter().get()") in {0, 1, 3, 4}
    ok(kernel, "%flame_service cnt_os = Counter(10)")
    assert val(kernel, "cnt_os.add(1); cnt_os.add(3); res_r = cnt_os.get_counter(); res_r.get()") == 14
    assert val(kernel, "cnt_os.add(res_r); cnt_os.get_counter().get()") == 28
    ok(kernel, "%flame_service greet_service = greet")
    assert val(kernel, 'greet_service(name="World", greeting="Hi").get()') == "Hi, World!"
    listing = ok(kernel, "%flame_service --list").stdout
    for name in ("sum_service", "cnt_s", "cnt_os", "greet_service"):
        assert name in listing
    ok(kernel, "%flame_service --close greet_service")
    assert val(kernel, "'greet_service' in dir()") is False


def test_cell_magic_value_and_out_binding(kernel: KernelSession) -> None:
    r = ok(kernel, "%%flame -o y,z\ny = sum_fn(20, 22)\nz = [y] * 2\ny * 2")
    assert "done" in r.text
    assert val(kernel, "_.get()") == 84
    assert val(kernel, "(y, z)") == [42, [42, 42]]
    for i in range(8):  # the names are bound when the cell ends, not some time after
        ok(kernel, f"%%flame -o v\nv = {i}")
        assert val(kernel, "v") == i


def test_non_blocking_then_get(kernel: KernelSession) -> None:
    r = ok(kernel, "%%flame --no-block -o w\nimport time\ntime.sleep(1.0)\nw = 7\nw + 1")
    assert r.result is not None
    assert val(kernel, "_.state in ('queued', 'running')") is True
    assert val(kernel, "_.get(timeout=60)") == 8
    assert val(kernel, "w") == 7


def test_print_output_streams_while_the_cell_runs(kernel: KernelSession, tmp_path: Path) -> None:
    """Causal proof: the remote cell waits until the test has *received* its first line."""
    gate = tmp_path / "gate"
    code = (
        f"%%flame\nimport os, time\nprint('first line', flush=True)\nt = time.monotonic()\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() - t < 30:\n    time.sleep(0.05)\n"
        f"print('released' if os.path.exists({str(gate)!r}) else 'gave up')\n"
    )
    msg_id = kernel.kc.execute(code)
    first_seen = None
    texts = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=90)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
            if "first line" in msg["content"]["text"] and first_seen is None:
                first_seen = time.monotonic()
                gate.touch()
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    kernel.kc.get_shell_msg(timeout=30)
    out = "".join(texts)
    assert first_seen is not None, out
    assert "released" in out and out.index("first line") < out.index("released"), out


def test_remote_exception_shows_type_and_cell_line(kernel: KernelSession) -> None:
    r = kernel.execute("%%flame\ndef check(v):\n    raise KeyError(f'missing {v}')  # cell line\ncheck(3)")
    assert r.status == "error"
    assert r.error["ename"] == "KeyError"
    text = "\n".join(r.error["traceback"])
    assert "raise KeyError(f'missing {v}')  # cell line" in text
    assert "<flame cell In[" in text
    assert val(kernel, "1 + 1") == 2


def test_bad_input_gets_one_clear_error_and_changes_nothing(kernel: KernelSession) -> None:
    before = val(kernel, "sorted(get_ipython().find_line_magic('flame_service').__self__.services)")
    cases = {
        "%flame_service --bogus x = sum_fn": "unrecognized arguments: --bogus",
        "%flame_service x": "usage: %flame_service",
        "%flame_service x = not_defined_anywhere": "NameError: name 'not_defined_anywhere' is not defined",
        "%flame_service x = threading.Lock()": "cannot capture",
        "%flame_service --close nope": "no service named 'nope'",
        "%flame_service --warmup -1 x = sum_fn": "--warmup must be 0 or more",
        "%flame_service --memory lots x = sum_fn": "--memory 'lots'",
        "%%flame --frobnicate\n1": "unrecognized arguments: --frobnicate",
        "%%flame -o 1bad\nx = 1": "is not a Python name",
        "%%flame\nundefined_name + 1": "names not defined in the notebook: undefined_name",
        "%%flame\nlock": "cannot capture 'lock'",
        "%%flame --timeout -3\n1": "--timeout must be a positive number",
        "%flame frobnicate": "invalid choice: 'frobnicate'",
    }
    ok(kernel, "import threading\nlock = threading.Lock()")
    for code, expected in cases.items():
        r = kernel.execute(code)
        assert r.status == "error", code
        text = r.error_text() + r.stderr
        assert expected in text, (code, text)
        assert "Traceback" not in (r.error or {}).get("evalue", ""), code
    after = val(kernel, "sorted(get_ipython().find_line_magic('flame_service').__self__.services)")
    assert after == before
    assert val(kernel, "'x' in dir()") is False


def test_help_documents_every_option(kernel: KernelSession) -> None:
    doc = val(kernel, "get_ipython().find_cell_magic('flame').__doc__")
    for option in (
        "--out",
        "--no-block",
        "--timeout",
        "--label",
        "--cpu",
        "--memory",
        "--session",
        "Examples",
        "In [1]:",
    ):
        assert option in doc
    doc = val(kernel, "get_ipython().find_line_magic('flame_service').__doc__")
    for option in ("--autoscale", "--warmup", "--snapshot", "--list", "--close-all"):
        assert option in doc


def test_config_default_block(kernel: KernelSession) -> None:
    ok(kernel, "%config FlameMagics.block = False")
    try:
        r = ok(kernel, "%%flame\nimport time\ntime.sleep(0.5)\n5")
        assert val(kernel, "_.get(timeout=60)") == 5
        assert r.result is not None
    finally:
        ok(kernel, "%config FlameMagics.block = True")


def test_session_cells_share_executor_state(kernel: KernelSession) -> None:
    ok(kernel, "%%flame --session s1\ntable = {'a': 1}")
    assert val(kernel, "'table' in dir()") is False  # stayed remote
    ok(kernel, "%%flame --session s1\ntable['b'] = 2\nsorted(table)")
    assert val(kernel, "_.get()") == ["a", "b"]


# -- interrupt matrix (as ipyparallel's) -------------------------------------------------------------
SPIN_CELL = "%%flame\nimport time\nfor i in range(600):\n    time.sleep(0.05)\n'finished'"


def _interrupt_after_running(k: KernelSession, code: str) -> tuple[float, object]:
    msg_id = k.kc.execute(code)
    deadline = time.monotonic() + 60
    # wait until the remote work is running: the executor has it (the tracker saw it start)
    time.sleep(1.5)
    assert time.monotonic() < deadline
    t = time.monotonic()
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = k.kc.get_shell_msg(timeout=60)
    return time.monotonic() - t, reply


@pytest.mark.parametrize(
    "code",
    [
        SPIN_CELL,
        "%flame_service spin = lambda n: [__import__('time').sleep(0.05) for _ in range(n)]\nspin(600).get()",
    ],
    ids=["cell-magic", "service-get"],
)
def test_interrupt_stops_remote_work_and_kernel_stays_healthy(kernel: KernelSession, code: str) -> None:
    elapsed, reply = _interrupt_after_running(kernel, code)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert elapsed < 10, elapsed
    # the remote task was cancelled: the last future of the kernel ends cancelled, soon
    state = val(
        kernel,
        "import time\nfrom flame_jupyter.registry import registry\nf = max(registry.recent_futures() + registry.live_futures(), key=lambda f: f.submitted_at)\n"
        "t = time.monotonic()\nwhile not f.done() and time.monotonic() - t < 30: time.sleep(0.1)\nf.state",
    )
    assert state == "cancelled"
    assert val(kernel, "sum_fn(1, 1)") == 2
    assert val(kernel, "%flame_service s2 = sum_fn\ns2(2, 3).get()") == 5


def test_cancel_non_blocking_from_its_future(kernel: KernelSession) -> None:
    ok(kernel, SPIN_CELL.replace("%%flame", "%%flame --no-block"))
    state = val(
        kernel,
        "f = _\nimport time\nt = time.monotonic()\nwhile f.state != 'running' and time.monotonic() - t < 30: time.sleep(0.05)\n"
        "f.cancel()\nt = time.monotonic()\nwhile not f.done() and time.monotonic() - t < 30: time.sleep(0.05)\n(f.state, time.monotonic() - t < 10)",
    )
    assert state == ["cancelled", True]


def test_timeout_cancels_and_says_so(kernel: KernelSession) -> None:
    r = kernel.execute(SPIN_CELL.replace("%%flame", "%%flame --timeout 1"))
    assert r.status == "error"
    assert r.error["ename"] == "TimeoutError" and "1 s" in r.error["evalue"]


# -- restart / kill ---------------------------------------------------------------------------------
def _open_sessions(runtime) -> list[str]:
    return [s.metadata.id for s in runtime.store.list_sessions() if s.status.state == 0]


def test_kernel_restart_leaves_nothing_open_in_the_runtime(tmp_path: Path, runtime) -> None:
    before_apps = {a.name for a in runtime.store.list_applications()}
    before = set(_open_sessions(runtime))
    with KernelSession(cwd=tmp_path, extra_env=_kernel_env(tmp_path, runtime)) as k:
        ok(k, "%load_ext flame_jupyter")
        ok(k, GUIDE_DEFS + "\n%flame_service a = sum_fn\n%flame_service b = Counter(1)")
        ok(k, "a(1, 2).get(); b.add(1).get()")
        ok(k, "%%flame --no-block\n1")
        assert len(set(_open_sessions(runtime)) - before) >= 2
        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(_open_sessions(runtime)) - before:
            time.sleep(0.2)
        assert set(_open_sessions(runtime)) - before == set()
        assert {a.name for a in runtime.store.list_applications()} == before_apps
        assert val(k, "1 + 1") == 2


def test_killed_kernel_takes_its_embedded_runtime_and_instances_along(tmp_path: Path) -> None:
    env = _kernel_env(tmp_path)
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = ok(k, "%load_ext flame_jupyter")
        assert "embedded Flame runtime" in r.stdout
        ok(k, "%flame_service sq = lambda x: x * x\nsq(3).get()")
        rt_pid = val(k, "from flame_jupyter import connection\nconnection.current().runtime.pid")
        kernel_pid = k.km.provisioner.process.pid
        os.kill(kernel_pid, 9)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{rt_pid}").exists():
            time.sleep(0.2)
        assert not Path(f"/proc/{rt_pid}").exists(), "the embedded runtime outlived its kernel"
        leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == rt_pid]
        assert leftovers == []


def _ppid(p: Path) -> int:
    try:
        return int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def test_resources_reach_flame_session_spec(kernel: KernelSession, runtime) -> None:
    ok(kernel, "%%flame --cpu 2 --memory 512Mi\n1")
    sid = val(kernel, "_.session_id")
    spec = runtime.store.get_session(sid).spec
    assert (spec.resreq.cpu, spec.resreq.memory) == (2, 512 * 2**20)
    ok(kernel, "%%flame\n2")
    assert val(kernel, "_.session_id") != sid
    ok(kernel, "%flame_service --cpu 1 --memory 1Gi rs = sum_fn")  # within any machine's capacity
    spec = runtime.store.get_session(val(kernel, "rs.session_id")).spec
    assert (spec.resreq.cpu, spec.resreq.memory) == (1, 2**30)


def test_large_global_is_uploaded_once_for_two_calls_and_again_when_changed(
    kernel: KernelSession, runtime
) -> None:
    """A 200 MB notebook global used by two calls travels to the object cache once."""
    big = 200 * 2**20

    def big_objects() -> list[str]:
        return [o.key for o in runtime.cache_store.list_objects() if o.size >= big]

    before = set(big_objects())
    ok(
        kernel,
        "import numpy as np\nBIG = np.arange(200 * 2**20 // 8, dtype=np.float64)\ndef at(i):\n    return float(BIG[i])",
    )
    ok(kernel, "%flame_service big_at = at")
    assert val(kernel, "big_at(7).get()") == 7.0
    first = set(big_objects()) - before
    assert len(first) == 1, first
    assert val(kernel, "big_at(9).get()") == 9.0
    ok(kernel, "%%flame\nfloat(BIG[11])")
    assert val(kernel, "_.get()") == 11.0
    assert set(big_objects()) - before == first, "an unchanged global was uploaded again"
    ok(kernel, "BIG[7] = -1.0")
    assert val(kernel, "big_at(7).get()") == -1.0
    assert len(set(big_objects()) - before) == 2, "a changed global must be uploaded again"
    ok(kernel, "del BIG\n%flame_service --close big_at")


def test_label_with_spaces(kernel: KernelSession) -> None:
    ok(kernel, '%%flame --label "two words"\n1')
    assert val(kernel, "_.label") == "two words"
