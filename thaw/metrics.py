"""Classification metrics with their intervals: pure functions over label sequences.

The ``*_codes`` functions work on integer-coded labels, for bootstraps of thousands of
resamples (sklearn's per-call overhead dominates there); the others take label strings.
"""

from __future__ import annotations

import math
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


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over ``labels``."""
    return macro_f1_codes(*encode(y_true, y_pred, labels))


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (accuracy)."""
    if total == 0:
        return (0.0, 0.0)
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # at 0 or all correct the bound is exactly 0 or 1; floating point lands a hair inside
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return (low, high)


class StratifiedBootstrap:
    """Bootstrap resamples of example indices that keep every class's count: each class
    is resampled within itself, so no resample loses a class. (A plain bootstrap of a
    validation set with one or two rows per class drops classes, which then score 0 and
    drag every resampled macro-F1 below the point estimate.)"""

    def __init__(self, t: np.ndarray, seed: int = 0) -> None:
        order = np.argsort(t, kind="stable")
        _, starts, counts = np.unique(t[order], return_index=True, return_counts=True)
        self.order = order
        self.start = np.repeat(starts, counts)  # for each sorted position: its class's first position
        self.count = np.repeat(counts, counts)
        self.rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        picks = self.start + (self.rng.random(len(self.order)) * self.count).astype(np.int64)
        return self.order[picks]


def percentile_interval(values: Sequence[float], point: float, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values``, widened if needed to hold ``point``:
    an interval that excludes its own estimate says nothing a reader can use."""
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(min(lo, point)), float(max(hi, point))


def bootstrap_interval(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], confidence: float, samples: int, seed: int = 0
) -> tuple[float, float]:
    """Stratified bootstrap interval of macro-F1 over the classes present in ``y_true``."""
    present = [label for label in labels if label in set(y_true)] or list(labels)
    t, p, k = encode(y_true, y_pred, present)
    boot = StratifiedBootstrap(t, seed)
    scores = [macro_f1_codes(t[idx], p[idx], k) for idx in (boot.sample() for _ in range(samples))]
    return percentile_interval(scores, macro_f1_codes(t, p, k), confidence)


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], confidence: float, samples: int
) -> dict[str, float]:
    """Accuracy (Wilson interval) and macro-F1 over the classes present in ``y_true``
    (stratified bootstrap interval of ``samples`` resamples, which always holds it)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    correct = int((yt == yp).sum())
    acc_lo, acc_hi = wilson_interval(correct, len(yt), confidence)
    f1_lo, f1_hi = bootstrap_interval(yt, yp, labels, confidence, samples)
    return {
        "accuracy": correct / max(len(yt), 1),
        "accuracy_low": acc_lo,
        "accuracy_high": acc_hi,
        "macro_f1": macro_f1(yt, yp, [label for label in labels if label in set(yt)] or labels),
        "macro_f1_low": f1_lo,
        "macro_f1_high": f1_hi,
        "examples": float(len(yt)),
    }


def per_class_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """F1 of each class present in ``y_true``."""
    present = [label for label in labels if label in set(y_true)]
    t, p, k = encode(y_true, y_pred, present)
    tp = np.bincount(t[t == p], minlength=k + 1)[:k]
    denom = np.bincount(p, minlength=k + 1)[:k] + np.bincount(t, minlength=k + 1)[:k]
    f1 = np.divide(2 * tp, denom, out=np.zeros(k, dtype=float), where=denom > 0)
    return {label: float(v) for label, v in zip(present, f1, strict=True)}


def worst_classes(
    f1_by_rung: dict[str, dict[str, float]], baseline: str, k: int = 5, min_gain: float = 0.1
) -> list[dict]:
    """The ``k`` classes the ``baseline`` rung does worst on (below its macro-F1), their F1
    under every rung, and the first later rung (in the dict's order) that "fixed" each:
    raised its F1 by at least ``min_gain`` and to at least the baseline's macro-F1."""
    base = f1_by_rung[baseline]
    bar = float(np.mean(list(base.values()))) if base else 0.0
    later = [r for r in f1_by_rung if r != baseline]
    out = []
    for label in sorted((c for c in base if base[c] < bar), key=lambda c: (base[c], c))[:k]:
        need = max(bar, base[label] + min_gain)
        fixed_by = next((r for r in later if f1_by_rung[r].get(label, 0.0) >= need), None)
        out.append({"label": label, "f1": {r: f1_by_rung[r].get(label) for r in f1_by_rung}, "fixed_by": fixed_by})
    return out


def slice_accuracy(y_true: Sequence[str], y_pred: Sequence[str], slices: Sequence[str]) -> dict[str, dict]:
    """Rows and accuracy of each slice value (e.g. channel or language), worst first."""
    by: dict[str, list[bool]] = {}
    for t, p, s in zip(y_true, y_pred, slices, strict=True):
        by.setdefault(s, []).append(t == p)
    stats = {s: {"rows": len(v), "accuracy": float(np.mean(v))} for s, v in by.items()}
    return dict(sorted(stats.items(), key=lambda kv: (kv[1]["accuracy"], kv[0])))
