"""Rung 0, the from-scratch baseline: TF-IDF word + character n-grams and a linear SVM
(liblinear), C chosen on validation (or by cross-validation on small data). The yardstick
that catches negative transfer; it is never registered.

A linear SVM rather than logistic regression: the yardstick only predicts, and on
10-per-class CLINC150 (5 folds x 4 Cs) it scored macro-F1 0.8037 against logistic
regression's 0.8056 in 14.3 s against 67.7 s (lbfgs, warm-started), on a 2-core machine.

The grid's fits run side by side, one per core: liblinear releases the GIL while it
trains, and each fit is single-threaded. On all of CLINC150's 15,000 training rows (150
one-against-rest problems, 64,442 features) a fit took 8.7-10.8 s, the 4 Cs 38.0 s one
after another and 19.5 s two at a time on a 2-core machine, with the same validation accuracy
for each C (predictions compared one by one in tests/unit/ladder/test_scratch_grid.py)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prefect import task

from tasks.evaluation.scoring import score_predictions
from thaw.config import ThawConfig
from thaw.rungs import LadderContext, RungDetails, TrainedRung

SCRATCH = "scratch"  # not a rung of the ladder: the yardstick every rung is compared with
SCRATCH_LABEL = "from-scratch TF-IDF baseline"


def _fit_predict(train_texts: Sequence[str], train_labels, test_texts: Sequence[str], grid, cfg: ThawConfig):
    """Predicted labels for ``test_texts`` under each C of ``grid`` (one vectoriser fit),
    and the vocabulary size."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from thaw.text_form import model_text

    s = cfg.training.ladder.scratch
    vectorizers = [
        TfidfVectorizer(ngram_range=s.word_ngrams, sublinear_tf=True, max_features=s.max_features),
        TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, sublinear_tf=True, max_features=s.max_features),
    ]
    train_texts, test_texts = [model_text(t) for t in train_texts], [model_text(t) for t in test_texts]
    train_m = hstack([v.fit_transform(train_texts) for v in vectorizers]).tocsr()
    test_m = hstack([v.transform(test_texts) for v in vectorizers]).tocsr()
    y = np.asarray(train_labels)

    def predict(c: float) -> np.ndarray:
        svm = LinearSVC(C=c, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed)
        return svm.fit(train_m, y).predict(test_m)

    with ThreadPoolExecutor(max_workers=grid_workers(len(grid))) as threads:
        predicted = dict(zip(grid, threads.map(predict, grid), strict=True))
    return predicted, int(train_m.shape[1])


def grid_workers(settings: int) -> int:
    """Fits of a grid to run at once: one per core this process may use, at most one
    per setting (each holds its own copy of the features in liblinear's format)."""
    from thaw.modeling import usable_cores

    return max(1, min(settings, usable_cores()))


def _details(c: float, features: int, scores: dict, folds: int = 0) -> RungDetails:
    return RungDetails(
        method="TF-IDF (word and character n-grams) + linear SVM",
        frozen="no backbone: trained from scratch",
        trainable_fraction_of_backbone=0.0,
        settings={"C": c, "features": features},
        selection_scores={f"C={k}": v for k, v in scores.items()},
        folds=folds,
    )


@task(name="train-scratch-baseline")
def train_scratch_baseline(ctx: LadderContext) -> TrainedRung:
    """TF-IDF (word + char) + a linear SVM; no backbone involved. Scored on the
    validation split, or on the cross-validation folds when the evaluation plan says."""
    curated, labels, cfg, evaluation = ctx.curated, ctx.labels, ctx.cfg, ctx.evaluation
    from tasks.ladder.cross_validation import cross_validate_grid, cross_validated_metrics, gate_metric, pool

    grid, metric = cfg.training.ladder.scratch.c_grid, gate_metric(cfg)
    if evaluation.cross_validated:
        rows = pool(curated, cfg)
        widths: dict[str, int] = {}

        def fit_predict_grid(name, kept, held):
            texts = [rows.texts[i] for i in kept], [rows.labels[i] for i in kept], [rows.texts[i] for i in held]
            predicted, widths[name] = _fit_predict(*texts, grid, cfg)
            return predicted

        runs = cross_validate_grid(evaluation, rows.labels, labels, grid, fit_predict_grid, metric)
        scores = {c: float(np.mean(list(r.fold_scores.values()))) for c, r in runs.items()}
        best = max(scores, key=lambda c: (scores[c], -c))
        chosen = runs[best]
        width = max(widths.values())
        metrics = cross_validated_metrics(rows.labels, chosen, labels, evaluation, cfg)
        details = _details(best, width, scores, chosen.folds)
        return TrainedRung(SCRATCH, None, metrics, chosen.predictions, width * len(labels), details, chosen.fold_scores)
    train, val = curated.read(cfg.root, "train"), curated.read(cfg.root, "validation")
    predicted, width = _fit_predict(train.texts, train.labels, val.texts, grid, cfg)
    scores = {c: metric(val.labels, list(pred), labels) for c, pred in predicted.items()}
    best = max(scores, key=lambda c: (scores[c], -c))
    metrics = score_predictions(val.labels, predicted[best], labels, cfg)
    details = _details(best, width, scores)
    return TrainedRung(SCRATCH, None, metrics, tuple(predicted[best]), width * len(labels), details)
