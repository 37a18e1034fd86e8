"""Linear heads on embeddings: a logistic regression fit with C chosen on validation, and
its weights as a (classes x dim) matrix and bias in the order of the labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from thaw.config import ThawConfig


def fit_logistic_head(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], labels: tuple[str, ...], cfg: ThawConfig
) -> tuple[np.ndarray, np.ndarray, float, dict[float, float]]:
    """(weight classes x dim, bias, chosen C, val macro-F1 per C) for features ``x`` and
    labels ``y`` of the train and validation splits: C picked on validation, or
    ``head.c_without_validation`` when there is none (a fold, a refit)."""
    from thaw.metrics import macro_f1

    h = cfg.training.head
    if y.get("validation") is None:
        weight, bias = logistic_head(x["train"], y["train"], labels, h.c_without_validation, cfg)
        return weight, bias, h.c_without_validation, {}
    scores, heads = {}, {}
    with one_blas_thread():
        for c, clf in logistic_path(x["train"], y["train"], h.c_grid, h.max_iter, cfg.training.seed):
            heads[c] = linear_head_of(clf, labels, x["train"].shape[1])
            scores[c] = macro_f1(y["validation"], clf.predict(x["validation"]), labels)
    best = max(scores, key=lambda c: (scores[c], -c))
    weight, bias = heads[best]
    return weight, bias, best, scores


def logistic_head(
    x: np.ndarray, y: np.ndarray, labels: tuple[str, ...], c: float, cfg: ThawConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(weight classes x dim, bias) of the logistic regression at ``c`` on all of ``x``
    (``head.max_iter``, the training seed), on one BLAS thread."""
    from sklearn.linear_model import LogisticRegression

    with one_blas_thread():
        clf = LogisticRegression(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed).fit(x, y)
    return linear_head_of(clf, labels, x.shape[1])


def one_blas_thread() -> AbstractContextManager:
    """Within: NumPy's BLAS (OpenBLAS) runs one thread, in every thread of the process.
    For logistic-regression heads: L-BFGS's iterations are products of a few hundred
    dimensions and vector operations, on which a second BLAS thread costs more than it
    gives. Measured on this project's 2-core machine on frozen MiniLM features of
    CLINC150 (150 classes, 384 dimensions, ``head.c_grid``'s 4 Cs warm-started): 1,500
    rows 0.48 s on one thread against 1.71 s on two, 15,000 rows 4.21 s against 6.74 s,
    the frozen rung's 10 folds at 10 per class 4.06 s against 11.37 s. A heavy product of
    its own (a 2048-square fp64 matmul) still ran 1.8x faster on two. The limit is the
    process's, not the calling thread's: fits run side by side in threads
    (``tasks.ladder.frozen_rung``) each get one core."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def logistic_path(x, y, grid: Sequence[float], max_iter: int, seed: int) -> Iterator[tuple[float, object]]:
    """(C, fitted logistic regression) for each C in ``grid``, in increasing C, each fit
    starting from the previous solution (a warm start along the regularisation path):
    the same optima within the solver's tolerance, in fewer iterations (on TF-IDF of
    CLINC150 at 10 per class, 4 Cs took 17.8 s warm against 41.8 s cold here).

    One estimator is refit in place: use each before asking for the next."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=min(grid), max_iter=max_iter, random_state=seed, warm_start=True)
    for c in sorted(grid):
        clf.set_params(C=c)
        yield c, clf.fit(x, y)


def linear_head_of(clf, labels: tuple[str, ...], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight classes x dim, bias) in ``labels`` order; a class the fit never saw is
    never predicted."""
    order = [list(clf.classes_).index(label) if label in clf.classes_ else None for label in labels]
    weight = np.zeros((len(labels), dim), dtype=np.float32)
    bias = np.full(len(labels), -1e4, dtype=np.float32)
    coef = clf.coef_ if clf.coef_.shape[0] > 1 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    intercept = clf.intercept_ if clf.coef_.shape[0] > 1 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    for row, idx in enumerate(order):
        if idx is not None:
            weight[row], bias[row] = coef[idx], intercept[idx]
    return weight, bias
