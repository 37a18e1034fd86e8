"""Intervals that hold their estimate, on validation sets with 1 to 3 rows per class, and
the numbers behind the small-data switch."""

import numpy as np
import pytest

from thaw.gate import (
    RungScore,
    cross_validated_comparison,
    paired_comparison,
    required_validation_rows,
    rows_per_class_needed,
)
from thaw.metrics import classification_metrics


def _predictions(per_class: int, classes: int, error_rate: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = [f"intent_{i:02d}" for i in range(classes)]
    y = [label for label in labels for _ in range(per_class)]
    pred = [lab if rng.random() > error_rate else labels[rng.integers(classes)] for lab in y]
    return labels, y, pred


@pytest.mark.parametrize("per_class", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_interval_holds_its_estimate_with_one_to_three_rows_per_class(per_class, seed):
    labels, y, pred = _predictions(per_class, 77, 0.2, seed)
    m = classification_metrics(y, pred, labels, 0.95, 300)
    assert m["macro_f1_low"] <= m["macro_f1"] <= m["macro_f1_high"]
    assert m["accuracy_low"] <= m["accuracy"] <= m["accuracy_high"]


def test_macro_f1_is_over_the_classes_present():
    labels = ["a", "b", "c", "d"]  # d never occurs in this split
    m = classification_metrics(["a", "b", "c"], ["a", "b", "c"], labels, 0.95, 200)
    assert m["macro_f1"] == 1.0


@pytest.mark.parametrize("per_class", [1, 2, 3])
def test_the_paired_delta_interval_holds_the_observed_delta(per_class):
    labels, y, pred_a = _predictions(per_class, 50, 0.3, 5)
    _, _, pred_b = _predictions(per_class, 50, 0.2, 6)
    for metric in ("accuracy", "macro_f1"):
        c = paired_comparison(y, RungScore("a", 0, tuple(pred_a)), RungScore("b", 0, tuple(pred_b)), metric, 300)
        assert c.low <= c.delta <= c.high and 0 < c.p_value <= 1


def test_the_power_calculation_behind_the_small_data_switch():
    assert required_validation_rows(0.05, 0.05) == 147  # the default: the figure thaw/gate.py and thaw/config.py quote
    assert required_validation_rows(0.02, 0.05) == 926  # a 2-point gain needs six times as many
    assert rows_per_class_needed(10, 0.05, 0.05) == 15
    assert rows_per_class_needed(77, 0.05, 0.05) == 3  # 1.5 rows per class (10-shot) is fewer
    assert rows_per_class_needed(1000, 0.02, 0.05) == 3


def test_cross_validated_comparison_is_corrected_for_overlapping_folds():
    a = [0.80, 0.82, 0.79, 0.81, 0.80, 0.82]
    b = [0.84, 0.85, 0.83, 0.86, 0.84, 0.85]
    clear = cross_validated_comparison("a", "b", a, b, train_fraction=0.8)
    assert clear.delta > 0 and clear.p_value < 0.05 and clear.low <= clear.delta <= clear.high
    noisy = cross_validated_comparison("a", "b", a, [x + 0.002 * (-1) ** i for i, x in enumerate(a)], 0.8)
    assert noisy.p_value > 0.3


def test_worst_classes_are_those_below_average_and_fixed_means_a_real_gain():
    from thaw.metrics import worst_classes

    f1 = {"frozen": {"a": 0.2, "b": 0.9, "c": 0.5, "d": 0.95}, "peft": {"a": 0.85, "b": 0.9, "c": 0.55, "d": 0.9}}
    worst = worst_classes(f1, "frozen")
    assert [w["label"] for w in worst] == ["a", "c"]  # mean 0.6375: b and d are not "worst"
    assert worst[0]["fixed_by"] == "peft" and worst[1]["fixed_by"] is None  # c rose by 0.05 only


def test_a_cross_validated_estimate_holds_its_mean_within_zero_and_one():
    from thaw.gate import cross_validated_estimate

    mean, low, high = cross_validated_estimate([0.98, 1.0, 0.99, 1.0, 0.97], train_fraction=0.8)
    assert mean == pytest.approx(0.988) and 0.0 <= low < mean < high == 1.0  # clipped at 1
    assert cross_validated_estimate([0.5], 0.8) == (0.5, 0.5, 0.5)  # one fold: no spread to speak of
    _, narrow_low, _ = cross_validated_estimate([0.8, 0.81] * 5, 0.9)
    _, wide_low, _ = cross_validated_estimate([0.8, 0.81] * 5, 0.5)  # larger held-out share, wider
    assert wide_low < narrow_low
