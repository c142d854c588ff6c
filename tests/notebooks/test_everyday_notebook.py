"""notebooks/06-everyday.ipynb executed top to bottom in a fresh kernel, its outputs asserted:
pandas in and out (also a 10 MB DataFrame argument), a plot from ``%%flame`` as an image, a tqdm
bar as one line, a blocking cell with its live widget and progress, and an error."""

from __future__ import annotations

from pathlib import Path

from tests.notebooks.nb_helpers import NOTEBOOKS, cell, error, execute_notebook, stdout, text

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_06_everyday_notebook(tmp_path: Path) -> None:
    nb = execute_notebook(NOTEBOOKS / "06-everyday.ipynb", tmp_path)

    table = text(nb, "pandas-out")
    assert "total" in table and "rows" in table and "a" in table.split("\n", 2)[-1], table

    assert stdout(nb, "big-argument") == "10 MB\n"  # over 4 MiB: it goes through the object cache
    big = text(nb, "big-argument").splitlines()
    assert big[0].split() == ["total", "rows"] and len(big) == 6, big
    assert [line.split() for line in big[2:]] == [[str(g), "1365000", "105000"] for g in range(4)], big

    plot = cell(nb, "plot").outputs
    images = [o for o in plot if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 1, [o.output_type for o in plot]  # the figure, once
    assert images[0].data["image/png"].startswith("iVBORw0K")
    assert stdout(nb, "plot") == "plotting 20 rows\n"
    assert "Figure(" not in str(plot)
    assert "done" in text(nb, "plot")

    bar, end = stdout(nb, "tqdm-text").splitlines()
    assert bar.startswith("steps: 100%") and "10/10" in bar, bar
    assert end == "all steps done"
    assert text(nb, "tqdm-text") == "(10.0, 10.0, 'steps')"

    outputs = cell(nb, "blocking").outputs
    kinds = [o.output_type for o in outputs]
    assert kinds[0] == "display_data" and kinds[-1] == "execute_result", kinds
    assert outputs[0].data == {"text/plain": ""}  # the live widget, emptied when the cell ended
    printed = stdout(nb, "blocking").splitlines()
    assert printed == [f"epoch {e}: loss {1 / e:.3f}" for e in range(1, 6)]  # once
    final = outputs[-1].data
    assert WIDGET_VIEW in final and "done" in final["text/plain"] and "loss" not in final["text/plain"]
    assert text(nb, "blocking-value") == "('trained', (5.0, 5.0, 'epoch 5'))"

    err = error(nb, "error")
    assert err["ename"] == "ValueError" and "n/a" in err["evalue"], err
    assert "[float(p) for p in prices]" in err["traceback"], err["traceback"]
