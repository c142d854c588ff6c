"""The tutorial notebooks, executed top to bottom in a fresh kernel against the embedded runtime.

Each test runs one ``notebooks/*.ipynb`` with nbclient, exactly as stored (plus, for notebook 4,
one appended cell that lists the object cache), and checks the outputs a reader is told to
expect. Cells are found by their tags. Notebooks are stored without outputs.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from tests.notebooks.nb_helpers import NOTEBOOKS, cell, error, execute_notebook, stdout, text

STORED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
TESTED = [
    "01-quickstart.ipynb",
    "02-flame-cells.ipynb",
    "03-errors-and-cancel.ipynb",
    "04-data-and-futures.ipynb",
    "05-cluster.ipynb",
    "06-everyday.ipynb",  # tests/notebooks/test_everyday_notebook.py
    "07-ml.ipynb",  # tests/notebooks/test_ml_notebook.py
]
EMBEDDED = "flame_jupyter: embedded Flame runtime at http://127.0.0.1:"


def run(name: str, tmp_path: Path, extra_cells: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    path = NOTEBOOKS / name
    if extra_cells:
        nb = nbformat.read(path, as_version=4)
        nb.cells.extend(nbformat.v4.new_code_cell(src) for src in extra_cells)
        path = tmp_path / name
        nbformat.write(nb, path)
    return execute_notebook(path, tmp_path)


def test_every_notebook_is_tested_and_stored_without_outputs() -> None:
    assert STORED == TESTED
    for name in STORED:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for c in nb.cells:
            if c.cell_type == "code":
                assert c.outputs == [] and c.execution_count is None, (name, c.source[:60])
        assert "widgets" not in nb.metadata, name


def test_01_quickstart_gives_the_runner_guide_results(tmp_path: Path) -> None:
    nb = run("01-quickstart.ipynb", tmp_path)
    assert stdout(nb, "load").startswith(EMBEDDED)
    assert text(nb, "sum") == "4"
    assert text(nb, "class") == "4"
    assert text(nb, "instance") == "14"
    assert text(nb, "future-arg") == "28"
    assert text(nb, "multi") == "(8, 28)"
    assert text(nb, "greet") == "'Hi, World!'"
    listing = stdout(nb, "list")
    for service in ("sum_service", "cnt_os", "calc_service", "greet_service"):
        assert re.search(rf"^{service}\s", listing, re.M), listing
    assert not re.search(r"^cnt_s\s", listing, re.M), listing  # closed earlier in the notebook


def test_02_flame_cells_stream_output_progress_and_bind_names(tmp_path: Path) -> None:
    nb = run("02-flame-cells.ipynb", tmp_path)
    kernel_pid = int(stdout(nb, "kernel-pid").split()[-1])
    executor_pid = int(stdout(nb, "remote-pid").split()[-1])
    assert executor_pid != kernel_pid
    assert text(nb, "remote-value") == str(sum(i * i for i in range(100)))

    printed = stdout(nb, "progress").splitlines()
    assert printed == [f"epoch {e}: loss {1 / e:.3f}" for e in range(1, 6)]
    assert text(nb, "progress-kept") == "((5.0, 5.0, 'epoch 5'), 'trained')"

    assert ast.literal_eval(text(nb, "out")) == ([i * i for i in range(10)], 285)
    assert text(nb, "no-block-state") in ("'queued'", "'running'")  # the cell returned at once
    assert text(nb, "no-block-value") == "'fitted'"
    assert ast.literal_eval(text(nb, "no-block-out")) == {"weights": [0.1, 0.2, 0.3]}
    assert text(nb, "session-value") == "998001"
    assert text(nb, "session-local") == "False"


def test_03_errors_cancel_timeout_and_interrupt(tmp_path: Path) -> None:
    nb = run("03-errors-and-cancel.ipynb", tmp_path)
    printed = stdout(nb, "remote-error")
    assert printed.startswith("ValueError - could not convert string to float: 'twelve dollars'\n"), printed
    assert 'return float(text.strip("$"))' in printed and "in parse_price" in printed, printed
    assert text(nb, "after-error") == "12.5"
    assert text(nb, "cancel") == "'cancelled'"
    assert text(nb, "after-cancel") == "'finished'"
    assert text(nb, "timeout") == "'cancelled'"
    assert stdout(nb, "interrupt") == "interrupted\n"
    assert text(nb, "interrupt") == "'cancelled'"

    # the last cell raises on purpose: the remote exception, with the lines of both notebook cells
    err = error(nb, "cell-error")
    assert err["ename"] == "ValueError" and err["evalue"] == "could not convert string to float: 'n/a'"
    tb = err["traceback"]
    assert "Remote traceback (Flame executor)" in tb
    assert "<flame cell In[" in tb and "prices = [parse_price(row) for row in rows]" in tb, tb
    assert 'return float(text.strip("$"))' in tb, tb
    assert nb.cells[-1] is cell(nb, "cell-error")


# Appended by the test only: what is in the kernel's object cache now (key, bytes).
LIST_CACHE = """
import json
import pyarrow.flight
from flame_jupyter import connection
print(json.dumps([["/".join(p.decode() for p in f.descriptor.path), f.total_bytes]
                  for f in pyarrow.flight.connect(connection.current().cache_endpoint).list_flights()]))
"""


def test_04_large_global_is_uploaded_once_and_futures_travel_by_reference(tmp_path: Path) -> None:
    nb = run("04-data-and-futures.ipynb", tmp_path, extra_cells=(LIST_CACHE,))
    assert text(nb, "same-as-local") == "(True, True)"
    raw = ast.literal_eval(text(nb, "summary-raw"))
    assert raw["n"] == 2_000_000 and abs(raw["mean"] - 10) < 0.01 and abs(raw["std"] - 3) < 0.01, raw
    assert ast.literal_eval(text(nb, "summary-normalized")) == {"n": 2_000_000, "mean": 0.0, "std": 1.0}
    fractions = ast.literal_eval(text(nb, "get-many"))
    assert len(fractions) == 4 and fractions == sorted(fractions, reverse=True), fractions
    assert text(nb, "wait") == "(4, 0)"
    assert text(nb, "select") == "'fast'"

    objects = json.loads(nb.cells[-1].outputs[0].text)
    big = sorted((size, key) for key, size in objects if size >= 16_000_000)

    # The kernel's Runner keeps shared values under `<app>/<its key>` (`fjk-...`); a session's
    # objects (results) live under `<app>/<session id>` (`<app>-fjk-...-<n>`).
    def shared(key: str) -> bool:
        return key.split("/")[1].startswith("fjk-")

    # `data` (32 MB) once, by the notebook, although two services and four calls used it ...
    assert [shared(key) for size, key in big if size >= 32_000_000] == [True], big
    # ... and the 16 MB results (samples, normalized) only as results: futures were not re-uploaded
    assert [shared(key) for size, key in big if size < 32_000_000] == [False, False], big


def test_05_cluster_connects_by_configuration_alone(tmp_path: Path) -> None:
    nb = run("05-cluster.ipynb", tmp_path)
    assert stdout(nb, "load").startswith(EMBEDDED)
    connected = stdout(nb, "connect")
    assert connected.startswith("flame_jupyter: connected to Flame cluster at http://127.0.0.1:"), connected
    assert "(from argument)" in stdout(nb, "status")
    assert ast.literal_eval(text(nb, "work")) == {"flame": 5, "jupyter": 7}
    assert text(nb, "cell-work") == "'notebook'"
    assert text(nb, "flmrun") == "True"
    assert text(nb, "versions") == "True"
    assert text(nb, "resources") == "'scheduled'"
    assert stdout(nb, "disconnect").startswith("flame_jupyter: disconnected")


@pytest.mark.parametrize("name", TESTED)
def test_notebook_links_resolve(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", c.source):
            if "://" in target:
                continue
            assert (NOTEBOOKS / target).resolve().exists(), (name, target)
