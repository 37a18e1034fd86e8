"""Fast classification metrics on integer-coded labels, for bootstraps of thousands of
resamples (sklearn's per-call overhead dominates there)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes of true and predicted labels over ``labels`` (unknown predictions get
    their own code, which counts as wrong and belongs to no class)."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    t = np.fromiter((index.get(v, k) for v in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((index.get(v, k) for v in y_pred), dtype=np.int64, count=len(y_pred))
    return t, p, k


def macro_f1_codes(t: np.ndarray, p: np.ndarray, k: int) -> float:
    """Unweighted mean F1 over classes 0..k-1 (a class never true nor predicted scores 0),
    identical to sklearn's ``f1_score(average='macro', labels=..., zero_division=0)``."""
    tp = np.bincount(t[t == p], minlength=k + 1)[:k]
    predicted = np.bincount(p, minlength=k + 1)[:k]
    actual = np.bincount(t, minlength=k + 1)[:k]
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros(k, dtype=float), where=denom > 0)
    return float(f1.mean())


def accuracy_codes(t: np.ndarray, p: np.ndarray) -> float:
    return float((t == p).mean())
