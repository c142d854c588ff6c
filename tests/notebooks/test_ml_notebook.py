"""notebooks/07-ml.ipynb executed top to bottom in a fresh kernel, its outputs asserted (issue 19):
a scikit-learn grid search mapped over a served function (the same best as in the kernel), a
pipeline with a ``FunctionTransformer`` lambda and a custom metric passed as arguments (the fitted
pipeline agrees with a local fit), a small numpy network trained in a ``%%flame --session`` and
evaluated by a later session cell with a global defined between them, and ``--close-all``
closing the services and the session."""

from __future__ import annotations

import re
from pathlib import Path

from tests.notebooks.nb_helpers import NOTEBOOKS, execute_notebook, stdout, text

EMBEDDED = "flame_jupyter: embedded Flame runtime at http://127.0.0.1:"


def test_07_ml_notebook(tmp_path: Path) -> None:
    nb = execute_notebook(NOTEBOOKS / "07-ml.ipynb", tmp_path)
    assert stdout(nb, "load").startswith(EMBEDDED)

    found = re.fullmatch(
        r"9 fits, best \{'C': (\S+), 'gamma': (\S+)\} with accuracy (0\.\d+)\n", stdout(nb, "search")
    )
    assert found, stdout(nb, "search")
    assert float(found[3]) > 0.85, found[0]
    assert text(nb, "same-as-local") == "True"

    found = re.fullmatch(r"confident accuracy (0\.\d{3}) \(margin 0\.5\)\n", stdout(nb, "pipeline"))
    assert found and 0.5 < float(found[1]) <= 1.0, stdout(nb, "pipeline")
    assert text(nb, "pipeline") == "(1, 8)"  # the fitted model came back
    assert text(nb, "pipeline-same") == "(True, True)"

    found = re.fullmatch(r"trained 300 epochs, loss (\d\.\d{3})\n", stdout(nb, "train"))
    assert found and float(found[1]) < 0.3, stdout(nb, "train")
    assert "done" in text(nb, "train") and "300/300" in text(nb, "train"), text(nb, "train")

    # the later session cell used the model the session kept and the global defined since
    found = re.fullmatch(r"test accuracy (0\.\d{3}) at threshold 0\.5\n", stdout(nb, "evaluate"))
    assert found and float(found[1]) > 0.85, stdout(nb, "evaluate")
    result = re.search(r"^result: (\S+)$", text(nb, "evaluate"), re.M)
    assert result and abs(float(result[1]) - float(found[1])) < 1e-3, text(nb, "evaluate")

    listing = stdout(nb, "list")
    for name in ("search", "evaluate", "%%flame --session mlp"):
        assert re.search(rf"^{re.escape(name)}\s", listing, re.M), listing
    assert stdout(nb, "close-all") == (
        "flame_jupyter: closed search, evaluate, %%flame --session mlp; "
        "removed the notebook variables search, evaluate\n"
    )
