import pandas as pd

from tasks.dedup import exact_duplicate_positions, near_duplicate_positions, normalize_text, resolve_label_conflicts
from thaw.config import DedupConfig


def test_normalisation_folds_case_width_and_space():
    assert normalize_text("  Ｈello\tWORLD  ") == normalize_text("hello world")


def test_exact_duplicates_keep_the_first():
    assert exact_duplicate_positions(["A b", "c", "a  B", "C"]) == [2, 3]


def test_near_duplicate_is_found_and_distinct_text_is_not():
    cfg = DedupConfig(threshold=0.8)
    texts = ["where is my order, tracking has not moved in days",
             "where is my order, tracking has not moved in days!!",
             "please cancel my subscription at the end of this month"]
    assert near_duplicate_positions(texts, cfg) == [1]


def test_near_duplicates_against_a_reference_only():
    cfg = DedupConfig(threshold=0.8)
    ref = ["i lost my card yesterday please block it right away"]
    assert near_duplicate_positions(["I lost my card yesterday, please block it right away", "reset my password"], cfg, ref) == [0]


def test_label_conflict_majority_keeps_majority_rows():
    frame = pd.DataFrame({"text": ["x", "X", "x ", "y"], "label": ["a", "a", "b", "c"]})
    removals, conflicts = resolve_label_conflicts(frame, "majority")
    assert conflicts == 1 and removals[0].positions == (2,)


def test_label_conflict_drop_and_ties_drop_all():
    frame = pd.DataFrame({"text": ["x", "x", "y"], "label": ["a", "b", "c"]})
    for policy in ("drop", "majority"):
        removals, _ = resolve_label_conflicts(frame, policy)
        assert removals[0].positions == (0, 1)
