"""``%flame check`` / ``flame_jupyter.check()``: a probe task compares the executors' environment
with the kernel's, on the embedded runtime and on one whose executors lack a notebook import."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy

import flame_jupyter as fj
from tests.conftest import REPO
from tests.kernel_helpers import KernelSession


def test_check_on_the_embedded_runtime_is_ok(runtime) -> None:
    report = fj.check(namespace={"np": numpy, "json": json, "dumps": json.dumps, "x": 1})
    assert report.ok, str(report)
    assert report.modules == ["numpy"]  # installed imports only: not json (stdlib), not values
    assert [r.what for r in report.rows] == ["python", "flamepy", "dill", "cloudpickle"]
    assert all(r.kernel == r.executor for r in report.rows)
    text = str(report)
    assert "every notebook import is available on the executors" in text and "OK:" in text


def _kernel_only_package(root: Path) -> Path:
    """An installed distribution (``onlyhere-dist`` 1.2, module ``onlyhere``) that only the
    kernel's sys.path has: the executors (started by the runtime) cannot import it."""
    site = root / "kernel-site"
    (site / "onlyhere").mkdir(parents=True)
    (site / "onlyhere" / "__init__.py").write_text("VALUE = 1\n")
    info = site / "onlyhere_dist-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onlyhere-dist\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("onlyhere\n")
    return site


def test_flame_check_names_a_module_the_executors_lack_and_the_fix(tmp_path: Path, runtime) -> None:
    site = _kernel_only_package(tmp_path)
    env = {
        "HOME": str(tmp_path),
        **runtime.client_env(),
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
    }
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = k.execute("%load_ext flame_jupyter\nimport numpy as np, onlyhere\nfrom json import dumps")
        assert r.status == "ok", r.error_text()
        r = k.execute("%flame check", timeout=120)
        assert r.status == "ok", r.error_text() + r.stderr
    out = r.stdout
    assert "notebook imports: numpy, onlyhere" in out, out
    assert "missing on the executors:" in out and "onlyhere (onlyhere-dist==1.2 in the kernel)" in out, out
    assert "uv pip install" in out and "Runner(dependencies=['onlyhere-dist==1.2'])" in out, out
    assert "NOT OK" in out
    for what in ("python", "flamepy", "dill", "cloudpickle"):
        assert any(
            line.strip().startswith(what) and line.rstrip().endswith("ok") for line in out.splitlines()
        )
