"""scikit-learn objects holding notebook functions, passed as arguments and fitted on an executor
(issue 19), in a real kernel: a ``Pipeline`` with a ``FunctionTransformer(lambda a: np.tanh(a))``
fitted remotely and used back here, a custom metric using a notebook constant as a scorer in a
remote ``cross_val_score``, and the same pipeline in a remote ``GridSearchCV`` with joblib workers.
Each remote result is compared with the same work done in the kernel."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernel_helpers import KernelSession

SETUP = r"""
import os
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=0)
MARGIN = 0.3


def confident_accuracy(y_true, y_pred_proba):
    "Right and at least MARGIN away from 0.5."
    p = np.asarray(y_pred_proba)
    return float(np.mean((np.abs(p - 0.5) >= MARGIN) & ((p >= 0.5) == y_true)))


def tanh_pipeline():
    return Pipeline([("t", FunctionTransformer(lambda a: np.tanh(a))), ("m", LogisticRegression())])


def fit_where(model, X, y):
    return model.fit(X, y), os.getpid()


def cv_scores(model, metric):
    scorer = make_scorer(metric, response_method="predict_proba")  # the positive class's column
    return cross_val_score(model, X, y, cv=3, scoring=scorer).tolist()


def search(model, jobs):
    gs = GridSearchCV(model, {"m__C": [0.01, 1.0, 100.0]}, cv=3, n_jobs=jobs).fit(X, y)
    return gs.best_params_, round(float(gs.best_score_), 10)
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime: Any) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("ml-home")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("ml-cwd"), extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        ok(k, SETUP)
        ok(
            k,
            "%flame_service fit_s = fit_where\n%flame_service cv_s = cv_scores\n%flame_service search_s = search",
        )
        yield k


def ok(k: KernelSession, code: str, timeout: float = 180) -> str:
    r = k.execute(textwrap.dedent(code), timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r.stdout


def test_a_pipeline_with_a_notebook_lambda_is_fitted_remotely_and_used_here(kernel: KernelSession) -> None:
    ok(
        kernel,
        "fitted, where = fit_s(tanh_pipeline(), X, y).get(timeout=120)\nlocal = tanh_pipeline().fit(X, y)",
    )
    assert kernel.value("where != os.getpid()") is True  # fitted on an executor
    assert kernel.value("(type(fitted).__name__, [name for name, _ in fitted.steps])") == [
        "Pipeline",
        ["t", "m"],
    ]
    assert kernel.value("np.allclose(fitted.named_steps['m'].coef_, local.named_steps['m'].coef_)") is True
    assert kernel.value("bool((fitted.predict(X) == local.predict(X)).all())") is True
    # the transformer's function came back working, with np
    assert kernel.value("np.allclose(fitted.named_steps['t'].transform(X[:2]), np.tanh(X[:2]))") is True


def test_a_custom_metric_with_a_notebook_constant_scores_a_remote_cross_validation(
    kernel: KernelSession,
) -> None:
    local = kernel.value("cv_scores(tanh_pipeline(), confident_accuracy)")
    remote = kernel.value("cv_s(tanh_pipeline(), confident_accuracy).get(timeout=120)")
    assert remote == local and len(remote) == 3
    ok(kernel, "MARGIN = 0.0")  # the constant's current value travels with the next call
    looser = kernel.value("cv_s(tanh_pipeline(), confident_accuracy).get(timeout=120)")
    assert looser == kernel.value("cv_scores(tanh_pipeline(), confident_accuracy)") != remote, looser
    ok(kernel, "MARGIN = 0.3")


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_remote_grid_search_of_the_pipeline_matches_the_local_one(kernel: KernelSession, jobs: int) -> None:
    local = kernel.value("search(tanh_pipeline(), 1)", timeout=120)
    assert kernel.value(f"search_s(tanh_pipeline(), {jobs}).get(timeout=170)", timeout=180) == local
