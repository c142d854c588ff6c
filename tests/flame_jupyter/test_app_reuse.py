"""One Flame application (and one installed package) per kernel and environment, not one per
service or Runner, checked against the runtime's application list; cleanup still closes exactly
what is owned (the app goes with the last Runner that uses it)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import flamepy

from flame_jupyter.runner import default_app_name
from tests.conftest import PYTHON
from tests.kernel_helpers import KernelSession


def _apps_of(pid: int) -> list[str]:
    return sorted(
        a.name for a in flamepy.list_applications() if f"-{pid}-" in a.name and a.name.startswith("fj-")
    )


def test_the_default_name_is_one_per_process_and_environment() -> None:
    assert default_app_name() == default_app_name() == default_app_name([], None)
    assert default_app_name(["numpy"]) == default_app_name(["numpy"])
    names = {default_app_name(), default_app_name(["numpy"]), default_app_name(None, "3.12")}
    assert len(names) == 3
    assert default_app_name(["pandas", "numpy"]) == default_app_name(["numpy", "pandas"])


def test_three_services_a_cell_and_a_runner_share_the_kernels_app(tmp_path: Path, runtime: Any) -> None:
    env = {"HOME": str(tmp_path), **runtime.client_env()}
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = k.execute("%load_ext flame_jupyter")
        assert r.status == "ok", r.error_text()
        pid = k.value("__import__('os').getpid()")
        code = textwrap.dedent(
            """
            def f(x):
                return x + 1
            class C:
                def m(self):
                    return 2
            %flame_service fs = f
            %flame_service cs = C
            %flame_service os_ = C()
            assert (fs(1).get(), cs.m().get(), os_.m().get()) == (2, 2, 2)
            import flame_jupyter as fj
            rr = fj.Runner()
            assert rr.service(f)(2).get() == 3
            """
        )
        r = k.execute(code, timeout=180)
        assert r.status == "ok", r.error_text() + r.stderr
        r = k.execute("%%flame\ny = 40 + 2\ny", timeout=120)
        assert r.status == "ok", r.error_text() + r.stderr
        assert len(_apps_of(pid)) == 1, _apps_of(pid)
        r = k.execute("rr.close()", timeout=60)
        assert r.status == "ok", r.error_text() + r.stderr
        assert len(_apps_of(pid)) == 1, "the kernel's services still use the app"
        assert k.value("fs(5).get()") == 6
        r = k.execute("%unload_ext flame_jupyter", timeout=60)
        assert r.status == "ok", r.error_text() + r.stderr
        assert _apps_of(pid) == []


def test_two_sdk_runners_share_one_app_and_the_last_close_removes_it(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    body = textwrap.dedent(
        """
        import os
        import flamepy
        import flame_jupyter as fj

        def apps():
            return sorted(a.name for a in flamepy.list_applications() if f"-{os.getpid()}-" in a.name)

        def inc(x):
            return x + 1

        a, b = fj.Runner(), fj.Runner()
        print(a.name == b.name, a.service(inc)(1).get(), b.service(inc)(2).get(), len(apps()))
        a.close()
        print(len(apps()), b.service(inc)(3).get())
        b.close()
        print(len(apps()))
        """
    )
    script = tmp_path / "two_runners.py"
    script.write_text(body)
    proc = subprocess.run(
        [PYTHON, str(script)], cwd=tmp_path, env=script_env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.splitlines() == ["True 2 3 1", "1 4", "0"]
