"""Evaluation: the selected model on the test split, once (metrics with intervals, a
per-class report, a confusion matrix), and the one place predictions are scored with the
configured confidence level and bootstrap size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from thaw import artifacts
from thaw.config import ThawConfig
from thaw.metrics import classification_metrics
from thaw.plots import pyplot, save_figure


@dataclass(frozen=True)
class TestEvaluation:
    """Test-set metrics of the selected model and where its report files are."""

    metrics: dict[str, float]
    report_path: Path
    confusion_png: Path

    @property
    def reports(self) -> tuple[Path, ...]:
        return (self.report_path, self.confusion_png)


def score_predictions(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], cfg: ThawConfig
) -> dict[str, float]:
    """Accuracy and macro-F1 with intervals at the configured confidence level."""
    training = cfg.training
    return classification_metrics(y_true, y_pred, labels, training.confidence_level, training.ladder.bootstrap_samples)


def confusion_inches(classes: int) -> float:
    """The confusion matrix's side in inches: 0.45 a class, so 8-point labels stand apart,
    until a class would get 0.24 (17 points, still room for them): CLINC150's 150 classes
    in 36 inches (3,960 pixels at 110 dpi) rather than 69.5 (7,645, 9.3 s to draw)."""
    return max(5.0, min(0.45 * classes + 2, 0.2 * classes + 6))


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], path: Path) -> Path:
    """Write a row-normalised confusion matrix PNG."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(labels)).astype(float)
    cm /= np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = confusion_inches(len(labels))
    fig, ax = pyplot().subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test, row-normalised)")
    return save_figure(fig, path)


@task(name="evaluate-on-test")
def evaluate_on_test(
    y_true: list[str], y_pred: list[str], labels: tuple[str, ...], cfg: ThawConfig, out_dir: Path
) -> TestEvaluation:
    """Score the selected model's test predictions; write report JSON and confusion PNG."""
    from sklearn.metrics import classification_report

    metrics = score_predictions(y_true, y_pred, labels, cfg)
    per_class = classification_report(y_true, y_pred, labels=list(labels), output_dict=True, zero_division=0)
    report_path = out_dir / artifacts.TEST_REPORT
    report_path.write_text(json.dumps({"metrics": metrics, "per_class": per_class}, indent=2), encoding="utf-8")
    png = plot_confusion(y_true, y_pred, labels, out_dir / artifacts.CONFUSION_MATRIX)
    return TestEvaluation(metrics, report_path, png)
