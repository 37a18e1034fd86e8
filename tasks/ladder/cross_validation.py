"""Scoring a rung by repeated stratified k-fold cross-validation over train + validation,
for data whose validation split is too small for the gate to see a real gain.

Every rung is scored on the same folds (``EvaluationPlan.fold_rows``), so the gate can
compare two rungs fold by fold (``gate.cross_validated_comparison``). The out-of-fold
predictions of the first repeat (each pooled row predicted once, by a model that did
not see it) stand in for validation predictions in reports and per-class metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, Split, SplitRows
from thaw.rungs import EvaluationPlan

POOL = SplitRows(("train", "validation"))
Fold = tuple[str, tuple[int, ...], tuple[int, ...]]  # name, training positions, held-out positions


@dataclass(frozen=True)
class FoldOutput:
    """A fold's predicted labels with its held-out rows' log-probabilities (one row per
    held-out row, one column per class in the order of the ``labels`` the rung is
    cross-validated over), for fits that give probabilities."""

    labels: tuple[str, ...]
    log_probabilities: np.ndarray


Predicted = Sequence[str] | FoldOutput  # labels alone, or with their rows' log-probabilities
FitPredict = Callable[[str, tuple[int, ...], tuple[int, ...]], Predicted]
# every fold of one repeat at once (side by side, say), their predictions in fold order
FitPredictFolds = Callable[[Sequence[Fold]], Sequence[Predicted]]

# A probability is floored here before its log: one row a model was sure of and wrong
# about costs at most -log(1e-6) = 13.8, not the whole fold's mean.
PROBABILITY_FLOOR = 1e-6
_LOG_ZERO = -1e4  # log(0) as a finite number, so scaling it stays finite
# The temperatures a fold's log-loss may be read at (``recalibrated_fold_losses``).
TEMPERATURES = (0.05, 20.0)


def row_losses(log_probabilities, classes: Sequence[str], truth: Sequence[str], temperature: float = 1.0) -> np.ndarray:
    """Each row's log-loss from its log-probabilities over ``classes`` (their column
    order) and its true label, the probabilities first scaled to ``temperature`` (the
    softmax of log-probability / temperature); a label the model cannot predict, or a
    probability under the floor, is scored at the floor."""
    return _losses_at(_finite(log_probabilities), _true_columns(classes, truth), temperature)


def _finite(log_probabilities) -> np.ndarray:
    return np.maximum(np.asarray(log_probabilities, dtype=float), _LOG_ZERO)


def _true_columns(classes: Sequence[str], truth: Sequence[str]) -> np.ndarray:
    """Each row's true class as a column of ``classes``; -1 where it is not one."""
    column = {label: i for i, label in enumerate(classes)}
    return np.array([column.get(t, -1) for t in truth], dtype=int)


def _losses_at(finite: np.ndarray, columns: np.ndarray, temperature: float) -> np.ndarray:
    """``row_losses`` on log-probabilities made finite and true columns found (the
    temperature fit evaluates it some twenty times on the same rows)."""
    floor = math.log(PROBABILITY_FLOOR)
    scaled = finite / temperature
    top = scaled.max(axis=1)
    log_total = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    known = np.flatnonzero(columns >= 0)
    true = np.full(len(columns), floor)
    true[known] = scaled[known, columns[known]] - log_total[known]
    return -np.maximum(true, floor)


def in_label_order(log_probabilities, classes: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Log-probabilities over ``classes`` (a fold's fit may have seen fewer classes) as
    columns in the order of ``labels``; a class the fit never saw has log(0)."""
    ordered = np.full((len(log_probabilities), len(labels)), -np.inf)
    column = {label: i for i, label in enumerate(labels)}
    ordered[:, [column[c] for c in classes]] = log_probabilities
    return ordered


def fit_temperature(log_probabilities, classes: Sequence[str], truth: Sequence[str]) -> float:
    """The temperature within ``TEMPERATURES`` at which these rows' mean log-loss is
    least (temperature scaling, Guo et al. 2017): one number, so it changes how sure a
    model is, never which class it ranks first."""
    from scipy.optimize import minimize_scalar

    low, high = math.log(TEMPERATURES[0]), math.log(TEMPERATURES[1])
    finite, columns = _finite(log_probabilities), _true_columns(classes, truth)
    found = minimize_scalar(
        lambda t: float(_losses_at(finite, columns, math.exp(t)).mean()),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return math.exp(found.x)


def recalibrated_fold_losses(
    held_out: dict[str, tuple[int, np.ndarray, Sequence[str]]], classes: Sequence[str]
) -> dict[str, float]:
    """Each fold's mean log-loss at the temperature fitted on the other folds of its
    repeat (``held_out``: fold name -> (repeat, log-probabilities, true labels)).

    Why not the log-loss as given: it mixes how well a model ranks the classes with how
    sure it is on average, and the second is the regularisation's doing. On SpamAssassin
    at 10 per class the frozen rung's head over word n-grams (C=10 on 15 mails) gave its
    predicted class 0.69 on average, few-shot 0.94; on the test mails their log-loss
    was alike (0.433 and 0.435) while frozen's accuracy was 2.2 points higher, and at
    each one's best temperature its log-loss was the lower (0.297 against 0.363). Read
    at a temperature fitted on rows the fold does not score, the comparison sees the
    ranking, and no fold is scored on rows its temperature was fitted on."""
    losses = {}
    for name, (repeat, log_probabilities, truth) in held_out.items():
        others = [(lp, t) for n, (r, lp, t) in held_out.items() if r == repeat and n != name and len(t)]
        temperature = 1.0
        if others:
            temperature = fit_temperature(
                np.concatenate([lp for lp, _ in others]), classes, [label for _, t in others for label in t]
            )
        losses[name] = float(row_losses(log_probabilities, classes, truth, temperature).mean())
    return losses


def one_at_a_time(fit_predict: FitPredict) -> FitPredictFolds:
    """A repeat's folds fitted one after another by ``fit_predict``."""
    return lambda folds: [fit_predict(*fold) for fold in folds]


@dataclass(frozen=True)
class CrossValidated:
    """Per-fold scores, the first repeat's out-of-fold predictions, and folds scored."""

    fold_scores: dict[str, float]
    predictions: tuple[str, ...]
    folds: int
    # mean log-loss per fold, where given, at a temperature fitted on its repeat's other folds
    fold_losses: dict[str, float] = field(default_factory=dict)


def mean_fold_loss(scored: CrossValidated) -> float | None:
    """The mean of a rung's recalibrated fold log-losses, or None when its folds gave none."""
    return float(np.mean(list(scored.fold_losses.values()))) if scored.fold_losses else None


def best_setting(runs: dict, simplest_first: Sequence) -> object:
    """The setting of ``runs`` ({setting: CrossValidated}) with the highest mean fold
    score; on a tie, the lower mean fold log-loss (each fold's read at a temperature fitted
    on its repeat's other folds, as the gate reads them); on a tie of both, the first in
    ``simplest_first``.

    Why the log-loss: folds of a few rows score in coarse steps, so settings tie on the
    metric often (at 10 per class on SpamAssassin, folds of 4 mails, all five of the
    frozen rung's candidate heads scored 0.9467 on one draw), and the log-loss is a finer
    reading of the same folds. What it changed there is in ``docs/benchmarks.md``, "Ties
    between heads". The means are compared to 9 decimals, so two settings whose folds
    score alike tie whatever order the floats were summed in."""

    def key(position_setting):
        position, setting = position_setting
        scored = runs[setting]
        loss = mean_fold_loss(scored)
        score = round(float(np.mean(list(scored.fold_scores.values()))), 9)
        return (-score, round(loss, 9) if loss is not None else math.inf, position)

    return min(enumerate(simplest_first), key=key)[1]


def pool(curated: DatasetVersion, cfg: ThawConfig) -> Split:
    """Train and validation, one after the other: the rows cross-validation deals out."""
    return POOL.read(curated, cfg.root)


def gate_metric(cfg: ThawConfig) -> Callable[[Sequence[str], Sequence[str], Sequence[str]], float]:
    """The gate's metric as a function of (true, predicted, labels)."""
    from thaw.metrics import macro_f1

    if cfg.training.ladder.metric == "accuracy":
        return lambda y, p, labels: sum(a == b for a, b in zip(y, p, strict=True)) / max(len(y), 1)
    return macro_f1


def cross_validated_metrics(
    y_pool: Sequence[str], scored: CrossValidated, labels: Sequence[str], plan: EvaluationPlan, cfg: ThawConfig
) -> dict[str, float]:
    """A cross-validated rung's validation figures. The gate's metric is the mean of its
    fold scores over every repeat, the figure the gate compares fold by fold, with the
    corrected interval; the other metric is of the first repeat's out-of-fold predictions
    (scored once, pooled). The pooled figure leaves the later repeats out, and on a few
    rows per class the two part: a frozen rung on 19 mails in folds of 4 scored 0.947
    pooled over its first repeat and 0.753 over the folds of both."""
    from tasks.evaluation.scoring import score_predictions
    from thaw.gate import cross_validated_estimate

    metric = cfg.training.ladder.metric
    mean, low, high = cross_validated_estimate(
        list(scored.fold_scores.values()), 1 - 1 / plan.folds, cfg.training.confidence_level
    )
    pooled = score_predictions(y_pool, scored.predictions, labels, cfg)
    return pooled | {metric: mean, f"{metric}_low": low, f"{metric}_high": high}


def cross_validate(
    plan: EvaluationPlan,
    y_pool: Sequence[str],
    labels: Sequence[str],
    fit_predict_folds: FitPredictFolds,
    metric: Callable[[Sequence[str], Sequence[str], Sequence[str]], float],
    budget_s: float | None = None,
) -> CrossValidated:
    """Fit and score a repeat's folds (``fit_predict_folds``), repeat after repeat. With a
    time budget, the first repeat always completes and each further repeat starts only
    when, at the pace of those before it, it would end within the budget (a slow rung
    gets fewer repeats, never part of one). A fold that gives probabilities carries its
    log-loss, read at a temperature fitted on its repeat's other folds
    (``recalibrated_fold_losses``)."""
    folds = plan.fold_rows(list(y_pool))
    repeats = [folds[start : start + plan.folds] for start in range(0, len(folds), plan.folds)]
    started, scores, held_out = time.monotonic(), {}, {}
    oof: list[str] = [""] * len(y_pool)
    for done, repeat in enumerate(repeats):
        spent = time.monotonic() - started
        if budget_s is not None and done and spent + spent / done > budget_s:
            break
        predictions = list(fit_predict_folds(repeat))
        for (name, _, held), output in zip(repeat, predictions, strict=True):
            scored = isinstance(output, FoldOutput)
            predicted = list(output.labels if scored else output)
            truth = [y_pool[i] for i in held]
            scores[name] = metric(truth, predicted, labels)
            if scored and held:
                held_out[name] = (done, output.log_probabilities, truth)
            if not done:
                for position, label in zip(held, predicted, strict=True):
                    oof[position] = label
    return CrossValidated(scores, tuple(oof), len(scores), recalibrated_fold_losses(held_out, labels))


def cross_validate_grid(
    plan: EvaluationPlan,
    y_pool: Sequence[str],
    labels: Sequence[str],
    grid: Sequence[float],
    fit_predict_grid: Callable[[str, tuple[int, ...], tuple[int, ...]], dict],
    metric: Callable[[Sequence[str], Sequence[str], Sequence[str]], float],
    workers: int = 1,
) -> dict[float, CrossValidated]:
    """``cross_validate`` for every setting of ``grid`` on the same folds, where one fit
    per fold yields the predictions of every setting (``fit_predict_grid`` returns
    {setting: predictions}; a warm-started regularisation path, say). ``workers`` > 1: a
    repeat's folds are fitted that many at a time in threads (for fits that release the
    GIL, such as scikit-learn's solvers)."""
    from concurrent.futures import ThreadPoolExecutor

    per_fold: dict[str, dict] = {}

    def fit_missing(folds: Sequence[Fold]) -> None:
        missing = [fold for fold in folds if fold[0] not in per_fold]
        if workers > 1 and len(missing) > 1:
            with ThreadPoolExecutor(min(workers, len(missing))) as threads:
                fitted = list(threads.map(lambda fold: fit_predict_grid(*fold), missing))
        else:
            fitted = [fit_predict_grid(*fold) for fold in missing]
        per_fold.update({fold[0]: grid_predictions for fold, grid_predictions in zip(missing, fitted, strict=True)})

    def one(setting):
        def fit_predict_folds(folds: Sequence[Fold]) -> list:
            fit_missing(folds)
            return [per_fold[name][setting] for name, _, _ in folds]

        return cross_validate(plan, y_pool, labels, fit_predict_folds, metric)

    return {setting: one(setting) for setting in grid}
