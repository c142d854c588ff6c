"""Run a tutorial notebook top to bottom, headless, and print what each cell shows.

    python notebooks/run.py notebooks/01-quickstart.ipynb
    python notebooks/run.py --save out.ipynb notebooks/02-flame-cells.ipynb

The notebook runs as on a fresh machine: a new kernel of this Python, a temporary HOME and no
``FLAME_*`` variables, so ``%load_ext flame_jupyter`` starts the embedded runtime even if you have a
``~/.flame/flame.yaml``. The tests (``tests/notebooks``) run the notebooks the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "flame-jupyter-notebooks"
CELL_TIMEOUT = 180  # seconds per cell


def fresh_env(home: Path) -> dict[str, str]:
    """This process's environment without FLAME_* variables, with HOME set to ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env.pop("PYTEST_CURRENT_TEST", None)
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def execute(notebook, workdir: Path, *, timeout: int = CELL_TIMEOUT):
    """Run every cell of ``notebook`` (a path, or a notebook read with nbformat, which gets the
    outputs as the cells run) in a fresh kernel started in ``workdir``; return the notebook with
    its outputs. A failing cell raises ``nbclient.exceptions.CellExecutionError`` unless it is
    tagged ``raises-exception``. The kernel runs this Python through a private kernelspec."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, (str, Path)) else notebook
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    spec_dir = tempfile.mkdtemp(prefix="fj-nb-kernelspec-")
    kdir = Path(spec_dir) / KERNEL_NAME
    kdir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "flame-jupyter notebooks",
        "language": "python",
    }
    (kdir / "kernel.json").write_text(json.dumps(spec))
    km = AsyncKernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[spec_dir])
    )
    client = NotebookClient(
        nb, km=km, timeout=timeout, startup_timeout=120, resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute(env=fresh_env(home), cwd=str(workdir))
    finally:
        try:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=False)
        finally:
            shutil.rmtree(spec_dir, ignore_errors=True)
    return nb


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def transcript(nb) -> str:
    """The code cells and their text outputs, as a console session."""
    lines = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = cell.source.splitlines() or [""]
        lines.append(f"In [{cell.execution_count or ' '}]: {source[0]}")
        lines += [f"   ...: {line}" for line in source[1:]]
        for out in cell.outputs:
            if out.output_type == "stream":
                lines += out.text.rstrip("\n").splitlines()
            elif out.output_type == "execute_result":
                lines.append(f"Out[{cell.execution_count}]: {out.data.get('text/plain', '')}")
            elif out.output_type == "error":
                lines += [_ANSI.sub("", line) for line in out.traceback]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--save", type=Path, help="also write the executed notebook here")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flame-jupyter-notebook-") as tmp:
        try:
            nb = execute(args.notebook.resolve(), Path(tmp), timeout=args.timeout)
        except Exception as e:  # noqa: BLE001 - nbclient says which cell failed, and how
            print(f"{args.notebook}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print(transcript(nb))
    if args.save:
        import nbformat

        nbformat.write(nb, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
