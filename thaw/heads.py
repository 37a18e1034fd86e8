"""Linear heads on embeddings: a logistic regression fit with C chosen on validation, and
its weights as a (classes x dim) matrix and bias in the order of the labels."""

from __future__ import annotations

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
    from sklearn.linear_model import LogisticRegression

    from thaw.metrics import macro_f1

    h = cfg.training.head
    if y.get("validation") is None:
        clf = LogisticRegression(C=h.c_without_validation, max_iter=h.max_iter, random_state=cfg.training.seed)
        weight, bias = linear_head_of(clf.fit(x["train"], y["train"]), labels, x["train"].shape[1])
        return weight, bias, h.c_without_validation, {}
    scores, fitted = {}, {}
    for c in h.c_grid:
        clf = LogisticRegression(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed)
        clf.fit(x["train"], y["train"])
        fitted[c], scores[c] = clf, macro_f1(y["validation"], clf.predict(x["validation"]), labels)
    best = max(scores, key=lambda c: (scores[c], -c))
    weight, bias = linear_head_of(fitted[best], labels, x["train"].shape[1])
    return weight, bias, best, scores


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
