"""Flame's two built-in services, re-provided in Python: ``flmexec`` and ``flmping``.

Flame ships them as Rust binaries (``flmexec/src``, ``flmping/src``); the runtime runs
``python -m flame_local.executors.builtin_services flmexec|flmping`` when an application's command is
``${FLAME_HOME}/bin/flmexec-service`` or ``${FLAME_HOME}/bin/flmping-service``.

* ``flmexec``: input JSON ``{"language": "python"|"shell", "runtime": ..., "code": ..., "input":
  [bytes] | null}``; the code runs as ``main.py`` (or a shell script) in a fresh work directory with
  the input on stdin; output JSON ``{"data": [bytes of stdout]}``.
* ``flmping``: input JSON ``{"duration": ms, "memory": bytes}`` (both optional); output JSON
  ``{"message": "Completed on <host> in <n> milliseconds with <size> memory"}``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from flamepy.core.service import FlameService, SessionContext, TaskContext, run

_PROPAGATED = (
    "PYTHONPATH", "FLAME_HOME", "FLAME_PYTHON_VERSION", "FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT",
    "FLAME_CA_FILE", "UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR", "XDG_CACHE_HOME", "PATH", "HOME",
    "USER", "TMPDIR", "TMP", "TEMP",
)  # fmt: skip


class _Base(FlameService):
    def on_session_enter(self, context: SessionContext) -> bool:
        return True

    def on_session_leave(self) -> bool:
        return True


class FlmexecService(_Base):
    """Runs a script per task and returns its standard output."""

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        script = json.loads((context.input or b"{}").decode("utf-8"))
        language = str(script.get("language", "")).lower()
        code = script.get("code")
        if not isinstance(code, str):
            raise ValueError("flmexec input needs a string 'code'")
        stdin = bytes(script["input"]) if script.get("input") is not None else b""
        env = {k: os.environ[k] for k in _PROPAGATED if k in os.environ}
        work = tempfile.mkdtemp(prefix="flmexec-")
        try:
            if language == "python":
                entry = os.path.join(work, "main.py")
                argv = [sys.executable, entry]
            elif language == "shell":
                entry = os.path.join(work, "main.sh")
                argv = [script.get("runtime") or "sh", entry]
            else:
                raise ValueError(f"Unsupported language: {script.get('language')}")
            with open(entry, "w", encoding="utf-8") as f:
                f.write(code)
            proc = subprocess.run(argv, cwd=work, env=env, input=stdin, stdout=subprocess.PIPE, check=False)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return json.dumps({"data": list(proc.stdout)}).encode("utf-8")


class FlmpingService(_Base):
    """Sleeps and allocates as asked, then says where it ran."""

    def on_task_invoke(self, context: TaskContext) -> bytes | None:
        start = time.monotonic()
        request = json.loads(context.input.decode("utf-8")) if context.input else {}
        memory = bytearray(int(request.get("memory") or 0))
        if request.get("duration"):
            time.sleep(int(request["duration"]) / 1000)
        elapsed = int((time.monotonic() - start) * 1000)
        message = (
            f"Completed on <{socket.gethostname()}> in <{elapsed}> milliseconds with <{len(memory)} B> memory"
        )
        return json.dumps({"message": message}).encode("utf-8")


SERVICES = {"flmexec": FlmexecService, "flmping": FlmpingService}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in SERVICES:
        raise SystemExit(f"usage: python -m flame_local.executors.builtin_services {{{'|'.join(SERVICES)}}}")
    run(SERVICES[args[0]]())


if __name__ == "__main__":
    main()
