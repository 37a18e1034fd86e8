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
