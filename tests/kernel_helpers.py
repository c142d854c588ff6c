"""Start a real IPython kernel (jupyter_client), run cells, collect iopub, shut it down.

Generic test helper, bounded in time everywhere:

    with KernelSession(cwd=tmp_path) as kernel:
        kernel.run("x = 1 + 1")
        assert kernel.run("print(x)").stdout == "2\\n"
        result = kernel.execute("1 / 0")          # no raise: inspect result.error
        assert result.error["ename"] == "ZeroDivisionError"

The kernel runs the Python of this process (``sys.executable``, i.e. the venv) through a
private kernelspec in a temp dir, so no global kernelspec is needed or touched.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

START_TIMEOUT = 60.0
EXECUTE_TIMEOUT = 60.0


@dataclass
class ExecResult:
    """What one ``execute_request`` produced."""

    status: str = "unknown"
    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None  # execute_result data (mimetype -> value)
    displays: list[dict[str, Any]] = field(default_factory=list)  # display_data / update_display_data
    error: dict[str, Any] | None = None  # ename, evalue, traceback
    messages: list[dict[str, Any]] = field(default_factory=list)  # all iopub messages of the request

    @property
    def text(self) -> str:
        """``text/plain`` of the execute_result ('' if none)."""
        return (self.result or {}).get("text/plain", "")

    def error_text(self) -> str:
        if not self.error:
            return ""
        return "{}: {}\n{}".format(
            self.error["ename"], self.error["evalue"], "\n".join(self.error["traceback"])
        )


class KernelSession:
    """A real kernel in ``cwd``; ``extra_env`` is added to its environment."""

    def __init__(
        self,
        cwd: str | os.PathLike[str] | None = None,
        *,
        python: str = sys.executable,
        extra_env: dict[str, str] | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.cwd = str(cwd) if cwd is not None else os.getcwd()
        self.python = python
        self.extra_env = extra_env or {}
        self.start_timeout = start_timeout
        self.km: KernelManager | None = None
        self.kc: Any = None
        self._spec_dir: str | None = None

    # lifecycle -------------------------------------------------------------
    def start(self) -> KernelSession:
        self._spec_dir = tempfile.mkdtemp(prefix="fj-kernelspec-")
        kdir = Path(self._spec_dir) / "fjtest"
        kdir.mkdir()
        spec = {
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "flame-jupyter tests",
            "language": "python",
        }
        (kdir / "kernel.json").write_text(json.dumps(spec))
        ksm = KernelSpecManager(kernel_dirs=[self._spec_dir])
        self.km = KernelManager(kernel_name="fjtest", kernel_spec_manager=ksm)
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update(self.extra_env)
        self.km.start_kernel(cwd=self.cwd, env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.start_timeout)
        except Exception:
            self.shutdown()
            raise
        return self

    def shutdown(self) -> None:
        """Stop channels and the kernel process (only the one this session started)."""
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:  # noqa: BLE001 - best effort during teardown
                pass
            self.kc = None
        if self.km is not None:
            try:
                if self.km.is_alive():
                    self.km.shutdown_kernel(now=False)
            except Exception:  # noqa: BLE001
                try:
                    self.km.shutdown_kernel(now=True)
                except Exception:  # noqa: BLE001
                    pass
            self.km = None
        if self._spec_dir is not None:
            shutil.rmtree(self._spec_dir, ignore_errors=True)
            self._spec_dir = None

    def __enter__(self) -> KernelSession:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # execution -------------------------------------------------------------
    def execute(self, code: str, *, timeout: float = EXECUTE_TIMEOUT) -> ExecResult:
        """Run ``code``; collect its iopub output until the kernel is idle again."""
        assert self.kc is not None, "kernel not started"
        deadline = time.monotonic() + timeout
        msg_id = self.kc.execute(code, store_history=True, allow_stdin=False)
        res = ExecResult()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._interrupt()
                raise TimeoutError(f"cell did not finish within {timeout:.0f}s:\n{code}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.km is not None and not self.km.is_alive():
                    raise RuntimeError(f"kernel died while running:\n{code}") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            res.messages.append(msg)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content.get("name") == "stderr":
                    res.stderr += content.get("text", "")
                else:
                    res.stdout += content.get("text", "")
            elif kind == "execute_result":
                res.result = content.get("data", {})
            elif kind in ("display_data", "update_display_data"):
                res.displays.append(content)
            elif kind == "error":
                res.error = {k: content.get(k) for k in ("ename", "evalue", "traceback")}
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no execute_reply within {timeout:.0f}s")
            try:
                reply = self.kc.get_shell_msg(timeout=remaining)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                res.status = reply["content"].get("status", "unknown")
                break
        return res

    def run(self, code: str, *, timeout: float = EXECUTE_TIMEOUT) -> ExecResult:
        """Like :meth:`execute` but raise ``AssertionError`` if the cell failed."""
        res = self.execute(code, timeout=timeout)
        if res.error or res.status != "ok":
            raise AssertionError(f"cell failed:\n{res.error_text()}\n--- code ---\n{code}")
        return res

    def value(self, expr: str, *, timeout: float = EXECUTE_TIMEOUT) -> Any:
        """JSON value of ``expr`` evaluated in the kernel."""
        out = self.run(f"import json as _j; print(_j.dumps({expr}))", timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def _interrupt(self) -> None:
        try:
            if self.km is not None:
                self.km.interrupt_kernel()
        except Exception:  # noqa: BLE001
            pass
