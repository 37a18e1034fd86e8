"""The scratch yardstick fits its grid of Cs side by side: each C's predictions are the
ones a fit of that C alone gives, whatever order the threads finish in."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from tasks.ladder.scratch_baseline import _fit_predict, grid_workers
from thaw.config import ThawConfig

WORDS = {
    "billing": ["invoice", "charge", "refund", "payment", "card", "receipt"],
    "login": ["password", "account", "locked", "reset", "sign", "username"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "address", "late"],
}


def _texts(seed: int, per_class: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in WORDS.items():
        noise = [w for other, ws in WORDS.items() if other != label for w in ws]
        for _ in range(per_class):
            texts.append(" ".join([*rng.choice(words, 3), *rng.choice(noise, 2)]))
            labels.append(label)
    return texts, labels


def test_each_c_predicts_as_a_fit_of_that_c_alone():
    cfg = ThawConfig()
    s = cfg.training.ladder.scratch
    grid = (0.001, 0.01, 0.1, 1.0, 10.0)  # far apart: their predictions differ
    (train, y), (test, _) = _texts(0, 20), _texts(1, 10)
    predicted, width = _fit_predict(train, y, test, grid, cfg)

    vectorizers = [
        TfidfVectorizer(ngram_range=s.word_ngrams, sublinear_tf=True, max_features=s.max_features),
        TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, sublinear_tf=True, max_features=s.max_features),
    ]
    x = hstack([v.fit_transform(train) for v in vectorizers]).tocsr()
    x_test = hstack([v.transform(test) for v in vectorizers]).tocsr()
    alone = {
        c: LinearSVC(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed).fit(x, y).predict(x_test)
        for c in grid
    }
    assert list(predicted) == list(grid)
    assert width == x.shape[1]
    assert len({tuple(p) for p in alone.values()}) > 1  # else a mix-up of Cs could not show
    for c in grid:
        assert list(predicted[c]) == list(alone[c]), c


@pytest.mark.parametrize(("cores", "settings", "workers"), [(2, 4, 2), (8, 4, 4), (8, 1, 1), (1, 4, 1), (2, 0, 1)])
def test_workers_are_bounded_by_settings_and_cores(monkeypatch, cores, settings, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert grid_workers(settings) == workers
