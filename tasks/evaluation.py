"""Evaluation: accuracy and macro-F1 with intervals, a per-class report, a confusion matrix.

The metric functions are pure; ``evaluate_on_test`` is the one place the test split
is read to score the selected model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Evaluation:
    """Test-set metrics of the selected model and where its report files are."""

    metrics: dict[str, float]
    report_path: Path
    confusion_png: Path


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
    return (max(0.0, centre - half), min(1.0, centre + half))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over ``labels``."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0))


def bootstrap_interval(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], confidence: float, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 over examples."""
    from thaw.metrics import encode, macro_f1_codes

    t, p, k = encode(y_true, y_pred, labels)
    rng = np.random.default_rng(seed)
    n = len(t)
    scores = [macro_f1_codes(t[idx], p[idx], k) for idx in (rng.integers(0, n, n) for _ in range(BOOTSTRAP_SAMPLES))]
    lo, hi = np.quantile(scores, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], confidence: float
) -> dict[str, float]:
    """accuracy and macro-F1 with their ``confidence`` intervals."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    correct = int((yt == yp).sum())
    acc_lo, acc_hi = wilson_interval(correct, len(yt), confidence)
    f1_lo, f1_hi = bootstrap_interval(yt, yp, labels, confidence)
    return {
        "accuracy": correct / max(len(yt), 1),
        "accuracy_low": acc_lo,
        "accuracy_high": acc_hi,
        "macro_f1": macro_f1(yt, yp, labels),
        "macro_f1_low": f1_lo,
        "macro_f1_high": f1_hi,
        "examples": float(len(yt)),
    }


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], path: Path) -> Path:
    """Write a row-normalised confusion matrix PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(labels)).astype(float)
    cm /= np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test, row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@task(name="evaluate-on-test")
def evaluate_on_test(
    y_true: list[str], y_pred: list[str], labels: tuple[str, ...], confidence: float, out_dir: Path
) -> Evaluation:
    """Score the selected model's test predictions; write report JSON and confusion PNG."""
    from sklearn.metrics import classification_report

    metrics = classification_metrics(y_true, y_pred, labels, confidence)
    per_class = classification_report(y_true, y_pred, labels=list(labels), output_dict=True, zero_division=0)
    report_path = out_dir / "test_report.json"
    report_path.write_text(json.dumps({"metrics": metrics, "per_class": per_class}, indent=2), encoding="utf-8")
    png = plot_confusion(y_true, y_pred, labels, out_dir / "confusion_matrix.png")
    return Evaluation(metrics, report_path, png)
