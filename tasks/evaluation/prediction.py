"""Prediction on the held-out test split: the one place the test labels are read.

The selected model is scored once; other rungs' test numbers may be reported, marked as
not used for selection.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.evaluation.scoring import score_predictions
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import TrainedRung


def predict_texts(model_dir: Path, texts: list[str]) -> list[str]:
    """Labels from a saved model directory, loaded as serving loads it, with its PyTorch
    encoder (the model as trained; its ONNX export is checked against these labels)."""
    from thaw.serving import ThawPredictor

    return ThawPredictor(model_dir, use_onnx=False).predict(texts)["label"].tolist()


@task(name="predict-test-split")
def predict_test_split(model_dir: Path, curated: DatasetVersion, cfg: ThawConfig) -> tuple[list[str], list[str]]:
    """(true labels, predicted labels) of a saved model on the test split."""
    test = curated.read(cfg.root, "test")
    return test.labels, predict_texts(model_dir, test.texts)


@task(name="report-unselected-rungs-on-test")
def report_unselected_rungs(
    trained: list[TrainedRung], selected: str, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig
) -> dict[str, dict]:
    """Test metrics of the rungs not selected, for information only (not used for selection)."""
    if not cfg.training.ladder.report_all_test_metrics:
        return {}
    test = curated.read(cfg.root, "test")
    out = {}
    for r in trained:
        if r.rung != selected and r.model_dir is not None:
            pred = predict_texts(r.model_dir, test.texts)
            out[r.rung] = score_predictions(test.labels, pred, labels, cfg) | {"used_for_selection": False}
    return out
