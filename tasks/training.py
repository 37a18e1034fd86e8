"""Training rungs: the scratch baseline (TF-IDF + logistic regression) and the frozen
rung (frozen backbone features + a logistic-regression head, C chosen on validation).

Each rung writes a self-describing model directory (weights as safetensors or JSON,
never pickles) and returns a ``TrainedRung`` with its validation predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from tasks.evaluation import classification_metrics
from tasks.features import FeatureSet
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig
from thaw.modeling import softmax_head


@dataclass(frozen=True)
class TrainedRung:
    """A trained rung: its model directory, validation metrics and predictions."""

    rung: str
    model_dir: Path | None  # None for the scratch baseline, which is never registered
    validation: dict[str, float]
    validation_predictions: tuple[str, ...]
    trainable_parameters: int
    details: dict


def read_split(curated: DatasetVersion, split: str, cfg: ThawConfig) -> pd.DataFrame:
    """A curated split as a frame with the user's column names."""
    from tasks.curation import read_curated_file

    return read_curated_file(cfg.root / curated.files[split].path)


def fit_logistic_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                      labels: tuple[str, ...], cfg: ThawConfig) -> tuple[np.ndarray, np.ndarray, float, dict[float, float]]:
    """(weight classes x dim, bias, chosen C, val macro-F1 per C): C picked on validation."""
    from sklearn.linear_model import LogisticRegression

    from tasks.evaluation import macro_f1

    scores, fitted = {}, {}
    for c in cfg.training.head.c_grid:
        clf = LogisticRegression(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed)
        clf.fit(x_train, y_train)
        fitted[c], scores[c] = clf, macro_f1(y_val, clf.predict(x_val), labels)
    best = max(scores, key=lambda c: (scores[c], -c))
    clf = fitted[best]
    order = [list(clf.classes_).index(label) if label in clf.classes_ else None for label in labels]
    weight = np.zeros((len(labels), x_train.shape[1]), dtype=np.float32)
    bias = np.full(len(labels), -1e4, dtype=np.float32)  # a class never seen in train is never predicted
    coef = clf.coef_ if clf.coef_.shape[0] > 1 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    intercept = clf.intercept_ if clf.coef_.shape[0] > 1 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    for row, idx in enumerate(order):
        if idx is not None:
            weight[row], bias[row] = coef[idx], intercept[idx]
    return weight, bias, best, scores


def save_linear_head(model_dir: Path, weight: np.ndarray, bias: np.ndarray, labels: tuple[str, ...], meta: dict) -> None:
    """head.safetensors + labels.json + model.json in ``model_dir``."""
    from safetensors.numpy import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}, str(model_dir / "head.safetensors"))
    (model_dir / "labels.json").write_text(json.dumps(list(labels)), encoding="utf-8")
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")


def _cached_head(features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, fit):
    """The head for these features, labels and head settings: from the cache, or fitted and cached."""
    import hashlib

    from safetensors.numpy import load_file, save_file

    blob = json.dumps({"features": {s: p.name for s, p in sorted(features.paths.items())},
                       "labels": {s: curated.files[s].md5 for s in ("train", "validation")}, "classes": list(labels),
                       "head": cfg.training.head.model_dump(mode="json"), "seed": cfg.training.seed}, sort_keys=True)
    cache = cfg.state_path / "cache" / "heads" / hashlib.sha256(blob.encode()).hexdigest()[:24]
    if (cache / "meta.json").is_file():
        head, meta = load_file(str(cache / "head.safetensors")), json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        return head["weight"], head["bias"], meta["C"], {float(k): v for k, v in meta["scores"].items()}, True
    weight, bias, c, scores = fit()
    cache.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight, "bias": bias}, str(cache / "head.safetensors"))
    (cache / "meta.json").write_text(json.dumps({"C": c, "scores": {str(k): v for k, v in scores.items()}}), encoding="utf-8")
    return weight, bias, c, scores, False


@task(name="train-frozen-rung")
def train_frozen_rung(features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, run_dir: Path) -> TrainedRung:
    """Fit a logistic-regression head on frozen features; the backbone is untouched."""
    label_col = cfg.data.label_column
    y = {s: read_split(curated, s, cfg)[label_col].to_numpy() for s in ("train", "validation")}
    x = {s: np.load(features.paths[s]) for s in ("train", "validation")}
    weight, bias, c, scores, head_hit = _cached_head(features, curated, labels, cfg, lambda: fit_logistic_head(
        x["train"], y["train"], x["validation"], y["validation"], labels, cfg))
    predictions = np.asarray(labels)[softmax_head(x["validation"], weight, bias).argmax(1)]
    model_dir = run_dir / "models" / "frozen"
    meta = {
        "rung": "frozen", "kind": "linear_head_on_frozen_encoder", "backbone": json.loads(features.backbone.to_json()),
        "pooling": cfg.backbone.pooling, "max_length": cfg.backbone.max_length, "head_C": c,
    }
    save_linear_head(model_dir, weight, bias, labels, meta)
    metrics = classification_metrics(y["validation"], predictions, labels, cfg.training.confidence_level)
    return TrainedRung("frozen", model_dir, metrics, tuple(predictions), int(weight.size + bias.size),
                       {"method": "linear probe (logistic regression)", "frozen": "the whole backbone",
                        "trainable_fraction_of_backbone": 0.0, "head_C": c,
                        "validation_macro_f1_by_C": {str(k): v for k, v in scores.items()},
                        "cache_hits": {**features.cache_hits, "head": head_hit}})


def predict_frozen(model_dir: Path, features: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(labels, probabilities) of a frozen-rung head on precomputed features."""
    from safetensors.numpy import load_file

    tensors = load_file(str(model_dir / "head.safetensors"))
    labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
    probs = softmax_head(features, tensors["weight"], tensors["bias"])
    return [labels[i] for i in probs.argmax(1)], probs
