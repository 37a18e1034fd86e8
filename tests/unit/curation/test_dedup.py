import numpy as np
import pandas as pd
from datasketch import MinHash

from tasks.curation.dedup import (
    _shingles,
    exact_duplicate_positions,
    minhash_signatures,
    near_duplicate_positions,
    normalize_text,
    resolve_label_conflicts,
)
from thaw.config import DedupConfig


def test_normalisation_folds_case_width_and_space():
    assert normalize_text("  Ｈello\tWORLD  ") == normalize_text("hello world")


def test_exact_duplicates_keep_the_first():
    assert exact_duplicate_positions(["A b", "c", "a  B", "C"]) == [2, 3]


def test_near_duplicate_is_found_and_distinct_text_is_not():
    cfg = DedupConfig(threshold=0.8)
    texts = [
        "where is my order, tracking has not moved in days",
        "where is my order, tracking has not moved in days!!",
        "please cancel my subscription at the end of this month",
    ]
    assert near_duplicate_positions(minhash_signatures(texts, cfg), cfg) == [1]


def test_near_duplicates_against_a_reference_only():
    cfg = DedupConfig(threshold=0.8)
    ref = ["i lost my card yesterday please block it right away"]
    texts = ["I lost my card yesterday, please block it right away", "reset my password"]
    assert near_duplicate_positions(minhash_signatures(texts, cfg), cfg, minhash_signatures(ref, cfg)) == [0]


def test_signatures_equal_datasketch_minhash_row_for_row():
    cfg = DedupConfig(num_perm=64, shingle_size=4)
    texts = ["", "hi", "Where is my order?", "ünïcode ＷＩＤＥ text", "x" * 3000] + [
        f"ticket {i} about billing" for i in range(600)
    ]
    ours = minhash_signatures(texts, cfg)
    for i in (0, 1, 2, 3, 4, 5, 599, 604):
        reference = MinHash(num_perm=64, seed=1)
        reference.update_batch(_shingles(texts[i], 4))
        assert np.array_equal(ours[i], reference.hashvalues), i


def test_near_duplicates_keep_the_first_of_each_group():
    cfg = DedupConfig(threshold=0.8)
    a = "the quick brown fox jumps over the lazy dog near the river bank today"
    b = a + " ok"
    texts = [a, b, "something else entirely about invoices", a.upper() + "!"]
    assert near_duplicate_positions(minhash_signatures(texts, cfg), cfg) == [1, 3]


def test_label_conflict_majority_keeps_majority_rows():
    frame = pd.DataFrame({"text": ["x", "X", "x ", "y"], "label": ["a", "a", "b", "c"]})
    removals, conflicts = resolve_label_conflicts(frame, "majority")
    assert conflicts == 1 and removals[0].positions == (2,)


def test_label_conflict_drop_and_ties_drop_all():
    frame = pd.DataFrame({"text": ["x", "x", "y"], "label": ["a", "b", "c"]})
    for policy in ("drop", "majority"):
        removals, _ = resolve_label_conflicts(frame, policy)
        assert removals[0].positions == (0, 1)
