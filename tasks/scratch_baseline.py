"""Rung 0, the from-scratch baseline: TF-IDF word + character n-grams and logistic
regression, C chosen on validation. The yardstick that catches negative transfer; it is
never registered."""

from __future__ import annotations

import numpy as np
from prefect import task

from tasks.evaluation import score_predictions
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import RungDetails, TrainedRung


@task(name="train-scratch-baseline")
def train_scratch_baseline(curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig) -> TrainedRung:
    """TF-IDF (word + char) + logistic regression; no backbone involved."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from thaw.metrics import macro_f1

    s = cfg.training.ladder.scratch
    train, val = curated.read(cfg.root, "train"), curated.read(cfg.root, "validation")
    x_train, y_train, x_val, y_val = train.texts, np.asarray(train.labels), val.texts, np.asarray(val.labels)
    vectorizers = [
        TfidfVectorizer(ngram_range=s.word_ngrams, sublinear_tf=True, max_features=s.max_features),
        TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, sublinear_tf=True, max_features=s.max_features),
    ]
    train_m = hstack([v.fit_transform(x_train) for v in vectorizers]).tocsr()
    val_m = hstack([v.transform(x_val) for v in vectorizers]).tocsr()
    best = None
    scores = {}
    for c in s.c_grid:
        clf = LogisticRegression(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed)
        pred = clf.fit(train_m, y_train).predict(val_m)
        scores[c] = macro_f1(y_val, pred, labels)
        if best is None or scores[c] > best[0]:
            best = (scores[c], c, pred)
    _, c, pred = best
    metrics = score_predictions(y_val, pred, labels, cfg)
    details = RungDetails(
        method="TF-IDF (word and character n-grams) + logistic regression",
        frozen="no backbone: trained from scratch",
        trainable_fraction_of_backbone=0.0,
        settings={"C": c, "features": int(train_m.shape[1])},
        selection_scores={f"C={k}": v for k, v in scores.items()},
    )
    return TrainedRung("scratch", None, metrics, tuple(pred), int(train_m.shape[1] * len(labels)), details)
