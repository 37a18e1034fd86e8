"""Cross-validation repeats within a time budget: whole repeats only, at the pace of the
first, and every row predicted once by the first repeat."""

import pytest

from tasks.ladder import cross_validation
from tasks.ladder.cross_validation import cross_validate, one_at_a_time
from thaw.rungs import EvaluationPlan


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    ("budget_s", "folds_run"),
    [(None, 9), (50.0, 3), (60.0, 6), (89.0, 6), (90.0, 9), (0.0, 3)],
)
def test_repeats_start_only_when_they_would_end_within_the_budget(monkeypatch, budget_s, folds_run):
    clock = Clock()
    monkeypatch.setattr(cross_validation.time, "monotonic", clock)
    labels = [c for c in "abc" for _ in range(3)]  # 3 rows per class, 3 folds, 3 repeats
    plan = EvaluationPlan("cross-validation", 3, 3, 13, 0.0, 3, "test")
    seen = []

    def fit_predict(name, kept, held):
        clock.now += 10.0  # every fold costs 10 s
        seen.append(name)
        return [labels[i] for i in held]

    scored = cross_validate(
        plan, labels, sorted(set(labels)), one_at_a_time(fit_predict), lambda y, p, _: 1.0, budget_s
    )
    assert scored.folds == len(seen) == folds_run
    assert len(seen) % 3 == 0  # never part of a repeat
    assert scored.predictions == tuple(labels)  # the first repeat predicts every row once


def test_two_rows_per_class_cross_validate_in_two_folds():
    labels = ["a", "a", "b", "b"]
    plan = EvaluationPlan("cross-validation", 2, 2, 13, 0.0, 3, "test")
    scored = cross_validate(
        plan, labels, ("a", "b"), one_at_a_time(lambda n, k, h: ["a" for _ in h]), lambda y, p, _: 0.5, 1e9
    )
    assert scored.folds == 4 and set(scored.predictions) == {"a"}


@pytest.mark.parametrize("rows_per_class", [2, 40])
def test_a_grid_scores_the_same_with_its_folds_side_by_side(rows_per_class):
    """The frozen rung's logistic-regression path, one fold at a time and a repeat's folds
    in two threads: the same predictions for every C, each fold fitted once."""
    import threading

    import numpy as np

    from tasks.ladder.cross_validation import cross_validate_grid
    from thaw.heads import logistic_path, one_blas_thread
    from thaw.metrics import macro_f1

    rng = np.random.default_rng(0)
    classes = ("a", "b", "c")
    y = np.repeat(np.array(classes), rows_per_class)
    x = rng.normal(size=(len(y), 8)) + np.repeat(np.eye(3, 8) * 2, rows_per_class, axis=0)
    plan = EvaluationPlan("cross-validation", 2, 2, 13, 0.0, 3, "test")
    grid = (0.3, 3.0)

    def run(workers):
        fitted, threads = [], set()

        def fit_predict_grid(name, kept, held):
            fitted.append(name)
            threads.add(threading.get_ident())
            return {
                c: clf.predict(x[list(held)]) for c, clf in logistic_path(x[list(kept)], y[list(kept)], grid, 200, 13)
            }

        with one_blas_thread():
            runs = cross_validate_grid(plan, list(y), classes, grid, fit_predict_grid, macro_f1, workers=workers)
        return runs, fitted, threads

    alone, fitted_alone, _ = run(1)
    side_by_side, fitted, threads = run(2)
    assert sorted(fitted) == sorted(fitted_alone) and len(fitted) == len(set(fitted)) == 4
    assert threading.get_ident() not in threads  # the folds did go to worker threads
    for c in grid:
        assert side_by_side[c].predictions == alone[c].predictions
        assert side_by_side[c].fold_scores == alone[c].fold_scores


def test_one_blas_thread_holds_within_and_is_lifted_after():
    from threadpoolctl import threadpool_info

    from thaw.heads import one_blas_thread

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = blas_threads()
    with one_blas_thread():
        assert blas_threads() == {1}
    assert blas_threads() == before


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_the_headline_figure_is_every_repeats_fold_mean_not_the_first_repeats_pooled_one(rows_per_class):
    from tasks.ladder.cross_validation import cross_validated_metrics
    from thaw.config import ThawConfig
    from thaw.metrics import macro_f1

    labels = [c for c in "ab" for _ in range(rows_per_class)]
    plan = EvaluationPlan("cross-validation", 2, 2, 13, 0.0, 3, "test")

    def fit_predict(name, kept, held):  # right in the first repeat, every row "a" in the second
        return [labels[i] if name.startswith("cv-r0") else "a" for i in held]

    scored = cross_validate(plan, labels, ("a", "b"), one_at_a_time(fit_predict), macro_f1)
    cfg = ThawConfig.model_validate({"training": {"ladder": {"bootstrap_samples": 100}}})
    metrics = cross_validated_metrics(labels, scored, ("a", "b"), plan, cfg)
    assert scored.predictions == tuple(labels)  # pooled over the first repeat: all right
    assert metrics["accuracy"] == 1.0  # the other metric is that pooled figure
    second = macro_f1(["a", "b"], ["a", "a"], ("a", "b"))  # a second-repeat fold: one class never predicted
    assert metrics["macro_f1"] == pytest.approx((1.0 + second) / 2)  # both repeats' folds, as the gate sees them
    assert 0.0 <= metrics["macro_f1_low"] <= metrics["macro_f1"] <= metrics["macro_f1_high"] <= 1.0


def test_a_rows_log_loss_is_floored_and_read_at_a_temperature():
    """-log p(true class), the probability floored (a class the model cannot predict
    too); at a temperature, of the softmax of log-probability / temperature."""
    import math

    import numpy as np

    from tasks.ladder.cross_validation import PROBABILITY_FLOOR, row_losses

    with np.errstate(divide="ignore"):
        log_probabilities = np.log(np.array([[0.8, 0.2], [0.3, 0.7], [1.0, 0.0]]))
    assert row_losses(log_probabilities, ["a", "b"], ["a", "a", "b"]) == pytest.approx(
        (-math.log(0.8), -math.log(0.3), -math.log(PROBABILITY_FLOOR))
    )
    assert row_losses(log_probabilities[:1], ["a", "b"], ["c"]) == pytest.approx((-math.log(PROBABILITY_FLOOR),))
    sharper = 0.8**2 / (0.8**2 + 0.2**2)  # temperature 0.5 squares the probabilities
    assert row_losses(log_probabilities[:1], ["a", "b"], ["a"], 0.5) == pytest.approx((-math.log(sharper),))


def _sure_of(labels, right_at, wrong_rows=()):
    """A fit that gives each held-out row's true class ``right_at`` (two classes), or
    the other class that much on ``wrong_rows``."""
    import numpy as np

    from tasks.ladder.cross_validation import FoldOutput

    def fit_predict(name, kept, held):
        rows = []
        for i in held:
            p = 1 - right_at if i in wrong_rows else right_at
            rows.append([p, 1 - p] if labels[i] == "a" else [1 - p, p])
        log_probabilities = np.log(np.array(rows))
        return FoldOutput(tuple(np.array(["a", "b"])[log_probabilities.argmax(1)]), log_probabilities)

    return fit_predict


def test_folds_that_give_probabilities_carry_their_log_loss_at_a_temperature_from_the_other_folds():
    """A fold's log-loss is read at the temperature that fits its repeat's other folds
    best: how sure a model is on average (the regularisation's doing) does not decide,
    how it ranks the classes does. Folds that give labels alone carry none."""
    from tasks.ladder.cross_validation import row_losses

    labels = [c for c in "ab" for _ in range(6)]
    plan = EvaluationPlan("cross-validation", 3, 1, 13, 0.0, 3, "test")
    metric = lambda y, p, _: 1.0  # noqa: E731
    timid = cross_validate(plan, labels, ("a", "b"), one_at_a_time(_sure_of(labels, 0.6)), metric)
    sure = cross_validate(plan, labels, ("a", "b"), one_at_a_time(_sure_of(labels, 0.95, wrong_rows={0})), metric)
    # as given, the sure model's log-loss is the lower (0.30 over every row against 0.51) ...
    every = tuple(range(len(labels)))
    given = {
        name: row_losses(fit("all", (), every).log_probabilities, ("a", "b"), labels).mean()
        for name, fit in (("timid", _sure_of(labels, 0.6)), ("sure", _sure_of(labels, 0.95, wrong_rows={0})))
    }
    assert given["sure"] < given["timid"] - 0.2
    # ... but the timid one ranks every row right: sharpened by the other folds, it wins
    assert max(timid.fold_losses.values()) < 0.01
    assert sum(sure.fold_losses.values()) / 3 > 0.5
    # the fold holding the wrong row is scored at a temperature fitted on the others'
    # rows, all right, so it pays more for that row than a temperature fitted on itself
    wrong = next(n for n, (_, _, held) in zip(sure.fold_scores, plan.fold_rows(labels), strict=True) if 0 in held)
    assert sure.fold_losses[wrong] > 2.5
    assert timid.predictions == tuple(labels)
    plain = cross_validate(plan, labels, ("a", "b"), one_at_a_time(lambda n, k, h: [labels[i] for i in h]), metric)
    assert plain.fold_losses == {} and plain.fold_scores == timid.fold_scores
