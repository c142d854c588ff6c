"""Execute a tutorial notebook top to bottom in a fresh kernel, as a user would, and read its outputs.

The execution is ``notebooks/run.py`` (the same script users and ``./dev`` can run): a new kernel of
this Python through a private kernelspec, HOME set to a temp dir and no ``FLAME_*`` variables, so no
user ``flame.yaml`` or cluster interferes and ``%load_ext flame_jupyter`` starts the embedded
runtime, as on a fresh machine.

Cells are found by their tags (``metadata.tags``), which users never see.

    nb = execute_notebook(NOTEBOOKS / "01-quickstart.ipynb", tmp_path)
    assert text(nb, "sum") == "4"
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import nbformat

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"

_spec = importlib.util.spec_from_file_location("flame_jupyter_notebook_runner", NOTEBOOKS / "run.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

kernel_env = runner.fresh_env


def execute_notebook(
    path: Path, workdir: Path, *, timeout: int = runner.CELL_TIMEOUT
) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel started in ``workdir``; return the notebook with
    its outputs (also written to ``workdir`` for inspection, even when a cell fails)."""
    nb = nbformat.read(path, as_version=4)
    try:
        return runner.execute(nb, workdir, timeout=timeout)
    finally:
        nbformat.write(nb, workdir / f"executed-{path.name}")


def cell(nb: nbformat.NotebookNode, tag: str) -> Any:
    """The one cell tagged ``tag``."""
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"{len(found)} cells tagged {tag!r}"
    return found[0]


def text(nb: nbformat.NotebookNode, tag: str) -> str:
    """``text/plain`` of the cell's value (its execute_result)."""
    results = [o for o in cell(nb, tag).outputs if o.output_type == "execute_result"]
    assert len(results) == 1, f"cell {tag!r} has {len(results)} results: {cell(nb, tag).outputs}"
    return results[0].data["text/plain"]


def stdout(nb: nbformat.NotebookNode, tag: str) -> str:
    """Everything the cell printed to stdout."""
    return "".join(o.text for o in cell(nb, tag).outputs if o.output_type == "stream" and o.name == "stdout")


def error(nb: nbformat.NotebookNode, tag: str) -> dict[str, Any]:
    """The cell's error output: ``ename``, ``evalue``, ``traceback`` (ANSI codes removed)."""
    errors = [o for o in cell(nb, tag).outputs if o.output_type == "error"]
    assert len(errors) == 1, f"cell {tag!r} has {len(errors)} errors: {cell(nb, tag).outputs}"
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    return {
        "ename": errors[0].ename,
        "evalue": errors[0].evalue,
        "traceback": "\n".join(ansi.sub("", line) for line in errors[0].traceback),
    }
