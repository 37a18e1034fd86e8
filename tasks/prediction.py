"""Prediction on the held-out test split: the one place the test labels are read."""

from __future__ import annotations

import numpy as np
from prefect import task

from tasks.features import FeatureSet
from tasks.training import TrainedRung, predict_frozen, read_split
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig


@task(name="predict-test-split")
def predict_test_split(selected: TrainedRung, features: FeatureSet, curated: DatasetVersion, cfg: ThawConfig) -> tuple[list[str], list[str]]:
    """(true labels, predicted labels) of the selected rung on the test split."""
    y_true = read_split(curated, "test", cfg)[cfg.data.label_column].tolist()
    y_pred, _ = predict_frozen(selected.model_dir, np.load(features.paths["test"]))
    return y_true, y_pred
