"""A saved env carrying module attributes (``wire.EnvAttr``), decoded by today's executor code.

The sample is what the kernel's capture engine writes when the notebook changed ``RATE`` of a
local module ``golden_rates`` (shipped as source). Regenerate it after a format change with
``python tests/golden/test_golden_env_attrs.py`` (then commit ``samples/env_attrs.pkl``).
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from flame_jupyter.remote import RemoteFunction, wire  # noqa: E402

SAMPLE = Path(__file__).resolve().parent / "samples" / "env_attrs.pkl"
MODULE = "golden_rates"
SOURCE = "RATE = 0.1\n\n\ndef price(x):\n    return x * (1 + RATE)\n"


def make() -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload state, the env of a call after ``golden_rates.RATE = 0.25``), made in a fresh module."""
    from flame_jupyter.capture import Capturer, MemoryObjectStore
    from flame_jupyter.capture import modules as capture_modules

    folder = Path(tempfile.mkdtemp(prefix="golden-attrs-"))
    (folder / f"{MODULE}.py").write_text(SOURCE)
    sys.path.insert(0, str(folder))
    capture_modules.local_top.cache_clear()
    try:
        mod = __import__(MODULE)
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, MODULE: mod}
        exec(f"def cost(x):\n    return {MODULE}.price(x), {MODULE}.RATE\n", ns)
        captured = Capturer(store=MemoryObjectStore()).capture(ns["cost"], ns=ns)
        mod.RATE = 0.25
        _, kwargs = captured.prepare_call((100,), {})
        return dict(captured.state, id="golden-attrs-0001"), kwargs[wire.ENV_KWARG]
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)
        capture_modules.local_top.cache_clear()


def test_saved_env_carries_the_changed_attribute() -> None:
    state, env = pickle.loads(SAMPLE.read_bytes())
    assert [(m, a) for m, a, _d, _data in env["attrs"]] == [(MODULE, "RATE")]
    assert [top for top, _d, _files in env["modules"]] == [MODULE]
    assert set(env) == set(wire.Env.__required_keys__ | wire.Env.__optional_keys__)


def test_saved_env_runs_with_the_current_executor_code() -> None:
    state, env = pickle.loads(SAMPLE.read_bytes())
    state = dict(state, id=uuid.uuid4().hex)
    try:
        assert RemoteFunction(state)(100) == (110.00000000000001, 0.1)  # the module as imported
        assert RemoteFunction(state)(100, **{wire.ENV_KWARG: env}) == (125.0, 0.25)
        no_attrs = dict(env, attrs=[])
        assert RemoteFunction(state)(100, **{wire.ENV_KWARG: no_attrs}) == (110.00000000000001, 0.1)
    finally:
        sys.modules.pop(MODULE, None)


def test_the_kernel_writes_it_so_today() -> None:
    _, env = make()
    saved = pickle.loads(SAMPLE.read_bytes())[1]
    assert [(m, a, d) for m, a, d, _ in env["attrs"]] == [(m, a, d) for m, a, d, _ in saved["attrs"]]


if __name__ == "__main__":
    SAMPLE.write_bytes(pickle.dumps(make(), protocol=5))
    print("wrote", SAMPLE)
