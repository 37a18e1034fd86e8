"""The drift statistics: calibrated under no change, firing on real change, and never
crashing on tiny samples."""

import numpy as np
import pytest

from thaw.config import MonitoringConfig
from thaw.drift import (
    assess_drift,
    label_shift_test,
    mmd_test,
    unseen_vocabulary_test,
    wilson_interval,
)
from thaw.text_form import normalise_pseudonyms


def test_same_distribution_p_values_are_roughly_uniform_so_alpha_is_the_false_alarm_rate():
    rng = np.random.default_rng(0)
    p = [mmd_test(rng.normal(size=(80, 8)), rng.normal(size=(40, 8)), 199, rng).p_value for _ in range(100)]
    assert 0.02 <= np.mean(np.array(p) < 0.1) <= 0.2  # about 10% below 0.1
    assert all(0 < x <= 1 for x in p)


def test_a_shifted_sample_is_detected():
    rng = np.random.default_rng(1)
    shifted = rng.normal(size=(40, 8)) + np.r_[0.8, np.zeros(7)]
    assert mmd_test(rng.normal(size=(80, 8)), shifted, 499, rng).p_value < 0.01


def test_tiny_samples_never_crash_and_say_nothing():
    rng = np.random.default_rng(2)
    assert mmd_test(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)), 99, rng).p_value == 1.0
    same = np.ones((3, 4))
    assert mmd_test(same, same, 99, rng).p_value == 1.0


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (1, 1), (2, 3), (95, 100), (0, 0)])
def test_wilson_interval_contains_the_estimate_and_stays_in_0_1(hits, n):
    low, high = wilson_interval(hits, n, 0.95)
    assert 0 <= low <= high <= 1
    if n:
        assert low <= hits / n <= high


def test_label_shift_tests_proportions():
    rng = np.random.default_rng(3)
    reference = ["a"] * 50 + ["b"] * 50
    assert label_shift_test(reference, ["a"] * 45 + ["b"] * 5, 999, rng) < 0.01
    assert label_shift_test(reference, ["a"] * 10 + ["b"] * 10, 999, rng) > 0.5
    # a class the reference sample lacks counts with all its rows on the new side: one
    # such arrival of 21 is what chance gives; thirty of 50 are not
    assert label_shift_test(reference, ["a"] * 10 + ["b"] * 10 + ["rare"], 999, rng) > 0.1
    assert label_shift_test(reference, ["a"] * 10 + ["b"] * 10 + ["c"] * 30, 999, rng) < 0.01


@pytest.mark.parametrize(
    ("reference", "new"),
    [(["a", "b"], ["a", "a"]), (["a", "a"], ["a"]), (["a", "b"], []), (["a", "b"] * 2, ["c"]), ([], ["a"])],
)
def test_label_shift_on_two_rows_never_crashes_and_stays_a_p_value(reference, new):
    p = label_shift_test(reference, new, 99, np.random.default_rng(0))
    assert 0.01 <= p <= 1.0


def test_label_shift_holds_its_level_where_most_cells_expect_under_two_rows():
    """150 equal classes, batches of 60 against 600 reference labels: each class expects
    0.4 rows in a batch, where the asymptotic chi-square is loose. By permutation the
    p-values are uniform, so about 10% of same-distribution batches fall below 0.1."""
    rng = np.random.default_rng(8)
    names = np.array([f"intent_{i}" for i in range(150)])
    p = [
        label_shift_test(list(names[rng.integers(0, 150, 600)]), list(names[rng.integers(0, 150, 60)]), 199, rng)
        for _ in range(200)
    ]
    assert 0.04 <= np.mean(np.array(p) < 0.1) <= 0.17
    assert 0.3 <= np.mean(np.array(p) < 0.5) <= 0.7


def test_pseudonyms_do_not_count_as_new_words():
    assert normalise_pseudonyms("hi <PERSON_1a2b3c>, card <CREDIT_CARD_ffffff>") == "hi <PERSON>, card <CREDIT_CARD>"
    vocabulary, rng = {"call", "person", "now"}, np.random.default_rng(0)
    assert unseen_vocabulary_test(["now"], ["call <PERSON_abcdef> now"], vocabulary, 99, rng)[0] == 0.0


def _texts(n, words):
    return [" ".join(words[(i + j) % len(words)] for j in range(5)) for i in range(n)]


def test_assessment_on_two_rows_per_class_runs_and_reports_without_firing_on_noise():
    rng = np.random.default_rng(3)
    ref_labels, new_labels = ["a", "a", "b", "b"], ["a", "b"]
    words = ["reset", "password", "refund", "order", "late", "login"]
    out = assess_drift(
        MonitoringConfig(alpha=0.01, permutations=99),
        rng.normal(size=(4, 6)),
        rng.normal(size=(2, 6)),
        _texts(4, words),
        _texts(2, words),
        _texts(2, words),
        rng,
        reference_labels=ref_labels,
        new_labels=new_labels,
        new_correct=[True, False],
        approved_accuracy=0.9,
    )
    assert not out.drifted, out.fired
    assert out.per_class == {}  # too few rows per class to test on their own
    assert out.accuracy == 0.5 and out.accuracy_interval[0] <= 0.5 <= out.accuracy_interval[1]


def _on_samples(seed: int, reference_sample: list[str], new_sample: list[str], **every_row):
    """The labelled tests on sampled rows' labels, with ``every_row``'s labels beside them."""
    rng = np.random.default_rng(seed)
    words = ["reset", "password", "refund", "order", "late", "login"]
    return assess_drift(
        MonitoringConfig(permutations=99),
        rng.normal(size=(len(reference_sample), 6)),
        rng.normal(size=(len(new_sample), 6)),
        _texts(200, words),
        _texts(20, words),
        _texts(len(new_sample), words),
        rng,
        reference_labels=reference_sample,
        new_labels=new_sample,
        **every_row,
    )


def test_a_class_only_the_reference_sample_lacks_is_not_new():
    """The rows compared are a sample of the training rows; the labels never seen are
    against every training row's. 'rare' is in training (2 of 200 rows) but not in the 40
    rows sampled."""
    out = _on_samples(5, ["a", "b"] * 20, ["a", "b"] * 10 + ["rare"], trained_labels=["a", "b"] * 99 + ["rare"] * 2)
    assert out.unknown_labels == [] and not any("never saw" in f for f in out.fired), out.fired
    assert out.known_label_rows == 200 and out.label_shift_p > 0.05


def test_a_new_label_on_an_arrival_the_sample_left_out_still_fires():
    """Only 20 of the 41 arrivals are embedded; the one 'loans' row is not among them."""
    out = _on_samples(6, ["a", "b"] * 20, ["a", "b"] * 10, arrival_labels=["a", "b"] * 20 + ["loans"])
    assert out.unknown_labels == ["loans"] and "labels the champion never saw: loans" in out.fired


def test_the_label_shift_reads_every_training_row_and_every_arrival():
    """The 20 arrivals embedded are balanced as training was; all 200 are nine to one."""
    trained = ["a", "b"] * 500
    out = _on_samples(
        7, ["a", "b"] * 20, ["a", "b"] * 10, trained_labels=trained, arrival_labels=["a"] * 180 + ["b"] * 20
    )
    assert out.label_shift_p < out.family_alpha and any(f.startswith("label shift:") for f in out.fired), out.fired
    same = _on_samples(7, ["a", "b"] * 20, ["a", "b"] * 10, trained_labels=trained, arrival_labels=["a", "b"] * 100)
    assert same.label_shift_p > 0.05 and same.fired == [], same.fired


def test_a_new_label_and_new_vocabulary_fire():
    rng = np.random.default_rng(4)
    ref = _texts(60, ["reset", "password", "refund", "order", "late", "login"])
    new = _texts(30, ["wire", "transfer", "mortgage", "interest", "loan", "rate"])
    out = assess_drift(
        MonitoringConfig(permutations=199),
        rng.normal(size=(60, 6)),
        rng.normal(size=(30, 6)) + 1.0,
        ref,
        ref[:20],
        new,
        rng,
        reference_labels=["a", "b"] * 30,
        new_labels=["a", "b", "loans"] * 10,
    )
    fired = " | ".join(out.fired)
    assert "never saw: loans" in fired and "unseen vocabulary" in fired and "text distribution" in fired


def test_one_moved_class_among_thirty_is_found_without_losing_power_to_thirty_tests():
    from thaw.drift import within_class_test

    rng = np.random.default_rng(5)
    groups = {f"c{i}": (rng.normal(size=(30, 6)), rng.normal(size=(25, 6))) for i in range(30)}
    p_same, _ = within_class_test(groups, 999, rng)
    groups["c7"] = (groups["c7"][0], groups["c7"][1] + 2.0)
    p_moved, per_class = within_class_test(groups, 999, rng)
    assert p_same > 0.01 and p_moved < 0.0025
    assert min(per_class, key=lambda c: per_class[c].p_value) == "c7"


def test_one_row_of_an_unknown_word_is_judged_against_the_held_out_rows_not_fired_on_its_share():
    """One new row of one unknown word is 100% unseen vocabulary: it fired the rule (a
    drift alarm, and a retraining where one is set). Among 20 held-out rows it is as
    extreme as a row drawn at random 1 time in 21 (p near 0.05): not significant at
    alpha/4. Thirty such rows fire (test_a_new_label_and_new_vocabulary_fire)."""
    rng = np.random.default_rng(5)
    ref = _texts(60, ["reset", "password", "refund", "order", "late", "login"])
    out = assess_drift(
        MonitoringConfig(permutations=199),
        rng.normal(size=(60, 6)),
        rng.normal(size=(1, 6)),
        ref,
        ref[:20],
        ["hello"],
        rng,
    )
    assert out.unseen_vocab_new == 1.0 and out.unseen_vocab_baseline == 0.0
    assert 0.03 < out.unseen_vocab_p < 0.07 and not any("unseen vocabulary" in f for f in out.fired)


def test_the_drift_report_shows_labels_in_what_fired_as_text():
    """The lines of what fired quote the arrivals' labels (new ones, the classes that moved
    most): in the Prefect artifact a label must not become a link, an image or emphasis."""
    from markdown_it import MarkdownIt

    from tasks.monitoring.drift import _markdown

    label = "[refund now](https://example.invalid) ![x](https://example.invalid/p.png) <img src=x> **urgent**"
    report = {
        "model": {"name": "tickets", "version": "3", "trained_on": ["train", "validation"]},
        "arrivals": {"file": "new.csv", "rows_after_dedup": 10, "exact_repeats_dropped": 0, "md5": "0" * 32},
        "false_alarm_rate": 0.01,
        "per_test_alpha": 0.0025,
        "text_distribution": {"p_value": 0.5},
        "unseen_vocabulary": {"new": 0.1, "heldout_baseline": 0.1, "p_value": 0.5, "margin": 0.05},
        "label_shift": {"chi_square_p": 0.001, "unknown_labels": [label], "known_label_rows": 100},
        "within_classes": {"p_value": 0.001, "classes": {"billing": {}}},
        "accuracy": None,
        "drifted": True,
        "fired": [
            f"labels the champion never saw: {label}",
            f"text within classes: p=0.0010 < 0.0025 (most moved: {label})",
        ],
    }
    rendered = MarkdownIt("commonmark", {"html": True}).render(_markdown(report))
    assert "<a " not in rendered and "<img" not in rendered and "<strong>urgent" not in rendered, rendered
    assert rendered.count("[refund now](https://example.invalid)") == 3  # the table's cell and both lines, as written
