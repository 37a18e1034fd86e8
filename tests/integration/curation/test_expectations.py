"""The Great Expectations suites on curated splits: what halts a run, said per split."""

from __future__ import annotations

import pandas as pd
import pytest

from thaw.config import ThawConfig

pytestmark = pytest.mark.integration


def _split(labels: list[str]) -> pd.DataFrame:
    texts = [f"message number {i} about the order" for i in range(len(labels))]
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "text": texts, "label": labels})


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_one_class_halts_with_a_line_that_says_so(tmp_path, rows_per_class):
    from tasks.curation.expectations import validate_frames

    cfg = ThawConfig.model_validate({"curation": {"expectations": {"min_rows": 1, "min_examples_per_class": 1}}})
    one = {"train": _split(["refund"] * rows_per_class), "test": _split(["refund"] * 2)}
    ok, failures, _, _ = validate_frames(one, cfg, tmp_path / "one")
    assert not ok and "train_class_counts: 1 class(es) in train; a classifier needs at least 2" in failures
    two = {"train": _split(["refund", "login"] * rows_per_class), "test": _split(["refund", "login"])}
    ok, failures, _, _ = validate_frames(two, cfg, tmp_path / "two")
    assert ok, failures


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_too_few_rows_halt_with_the_classes_and_the_carve_that_explain_it(tmp_path, rows_per_class):
    from tasks.curation.expectations import validate_frames

    limits = {"expectations": {"min_rows": 1}}
    cfg = ThawConfig.model_validate({"data": {"test": "test.csv"}, "curation": limits})  # validation carved
    few = _split(["login", "refund"] * rows_per_class + ["Émotion : joie"])
    empty = _split([])
    ok, failures, _, _ = validate_frames({"train": few, "validation": empty, "test": _split(["login"])}, cfg, tmp_path)
    assert not ok
    under = "class(es) with fewer than 3 training rows (curation.expectations.min_examples_per_class)"
    named = (
        "3 " + under + ": 'Émotion : joie' 1, 'login' 2, 'refund' 2"
        if rows_per_class == 2
        else "1 " + under + ": 'Émotion : joie' 1"
    )
    assert f"train_class_counts: expect_column_min_to_be_between(examples) failed: {named}" in failures  # fewest first
    carved = [f for f in failures if f.startswith("validation: expect_table_row_count_to_be_between")]
    if rows_per_class == 2:  # nothing to carve from classes of 2: said, with what to do
        assert carved == [
            "validation: expect_table_row_count_to_be_between failed (observed 0): carved out of the train file, "
            "it takes round(rows x 0.15) of each class (split.validation_fraction) as long as the class keeps 3 "
            "training rows, none from a class of fewer than 4, and the largest class here has 2; give a --validation "
            "file, or more rows per class"
        ]
    # a validation file of the user's that came out empty is not explained by the carve
    given = ThawConfig.model_validate({"data": {"validation": "val.csv"}, "curation": limits})
    ok, failures, _, _ = validate_frames({"train": few, "validation": empty}, given, tmp_path / "given")
    assert "validation: expect_table_row_count_to_be_between failed (observed 0)" in failures


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_a_train_split_under_min_rows_halts_naming_the_setting(tmp_path, rows_per_class):
    from tasks.curation.expectations import validate_frames

    minimum = 2 * rows_per_class + 1
    limits = {"expectations": {"min_rows": minimum, "min_examples_per_class": 1}}
    cfg = ThawConfig.model_validate({"data": {"test": "test.csv"}, "curation": limits})  # validation carved
    frames = {"train": _split(["login", "refund"] * rows_per_class), "test": _split(["login", "refund"])}
    ok, failures, _, _ = validate_frames(frames, cfg, tmp_path)
    assert not ok
    assert (
        f"train: expect_table_row_count_to_be_between failed (observed {2 * rows_per_class}): fewer training rows "
        "(after curation, and after validation carved out of the train file) than curation.expectations.min_rows "
        f"({minimum}); give more rows, or lower it if a model from so few is what you want"
    ) in failures
    lowered = {"expectations": {"min_rows": 2 * rows_per_class, "min_examples_per_class": 1}}
    enough = ThawConfig.model_validate({"data": {"test": "test.csv"}, "curation": lowered})
    ok, failures, _, _ = validate_frames(frames, enough, tmp_path / "enough")
    assert ok, failures


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_a_test_or_validation_label_the_training_split_lacks_halts_naming_it(tmp_path, rows_per_class):
    """A test file holding a few rows of a label the training rows lack: kept, the run went
    on with a class of no training rows (13 classes, 'rows per class min 0' on a 12-class
    CLINC150 sample), counted in every fold's macro-F1 and the gate's evidence, and the
    test macro-F1 fell from 0.967 to 0.889. Now the run halts and says which."""
    from tasks.curation.expectations import validate_frames

    cfg = ThawConfig.model_validate({"curation": {"expectations": {"min_rows": 1}}})
    train = _split(["refund", "login"] * rows_per_class * 2)
    test = _split(["refund", "weather", "login", "weather", "Wetter\u00a0heute"] * rows_per_class)
    ok, failures, _, checks = validate_frames(
        {"train": train, "validation": _split(["login"]), "test": test}, cfg, tmp_path
    )
    assert not ok and len(failures) == 1, failures
    assert failures[0].startswith(
        f"test: expect_column_values_to_be_in_set(label) failed: {3 * rows_per_class} rows of 2 label(s) the "
        f"training split does not have: 'weather' {2 * rows_per_class}, 'Wetter\\xa0heute' {rows_per_class} "
        "(rows 2, 4, 5, ... of the curated split)"
    )
    assert failures[0].endswith(
        "a model trained on it can never answer them: drop those rows from the test file, or give training rows "
        "of those labels"
    )
    assert any(c["split"] == "validation" and c["expectation"] == "expect_column_values_to_be_in_set" for c in checks)


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_a_label_the_training_split_has_in_other_case_is_named_beside_it(tmp_path, rows_per_class):
    """'Refund' in the test file where training says 'refund' halts as a label training
    lacks (case may be meant, thaw.datasets.case_variants), and the line says which
    training label it nearly is, so the fix is seen without reading both files."""
    from tasks.curation.expectations import validate_frames

    cfg = ThawConfig.model_validate({"curation": {"expectations": {"min_rows": 1}}})
    train = _split(["refund", "login", "Émotion"] * rows_per_class * 2)
    test = _split(["Refund", "login", "weather", "ÉMOTION"] * rows_per_class)
    ok, failures, _, _ = validate_frames({"train": train, "validation": _split(["login"]), "test": test}, cfg, tmp_path)
    assert not ok and len(failures) == 1, failures
    assert (
        "of the curated split) (in other case in training: 'Refund' as 'refund', 'ÉMOTION' as 'Émotion'; labels are "
        "matched with their case); a model trained on it can never answer them"
    ) in failures[0]
    assert "'weather' as" not in failures[0]
