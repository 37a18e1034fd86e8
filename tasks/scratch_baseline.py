"""Rung 0, the from-scratch baseline: TF-IDF word + character n-grams and logistic
regression, C chosen on validation. The yardstick that catches negative transfer; it is
never registered."""

from __future__ import annotations

import numpy as np
from prefect import task

from tasks.evaluation import classification_metrics
from tasks.frozen_rung import read_split
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig
from thaw.rungs import TrainedRung


def _texts_labels(curated: DatasetVersion, split: str, cfg: ThawConfig) -> tuple[list[str], np.ndarray]:
    frame = read_split(curated, split, cfg)
    return frame[cfg.data.text_column].tolist(), frame[cfg.data.label_column].to_numpy()


@task(name="train-scratch-baseline")
def train_scratch_baseline(curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig) -> TrainedRung:
    """TF-IDF (word + char) + logistic regression; no backbone involved."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from tasks.evaluation import macro_f1

    s = cfg.training.ladder.scratch
    x_train, y_train = _texts_labels(curated, "train", cfg)
    x_val, y_val = _texts_labels(curated, "validation", cfg)
    vectorizers = [
        TfidfVectorizer(ngram_range=s.word_ngrams, sublinear_tf=True, max_features=s.max_features),
        TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, sublinear_tf=True, max_features=s.max_features),
    ]
    train_m = hstack([v.fit_transform(x_train) for v in vectorizers]).tocsr()
    val_m = hstack([v.transform(x_val) for v in vectorizers]).tocsr()
    best = None
    for c in cfg.training.head.c_grid:
        clf = LogisticRegression(C=c * 10, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed).fit(
            train_m, y_train
        )
        pred = clf.predict(val_m)
        score = macro_f1(y_val, pred, labels)
        if best is None or score > best[0]:
            best = (score, c * 10, pred)
    _, c, pred = best
    metrics = classification_metrics(y_val, pred, labels, cfg.training.confidence_level)
    params = int(train_m.shape[1] * len(labels))
    return TrainedRung("scratch", None, metrics, tuple(pred), params, {"C": c, "features": int(train_m.shape[1])})
