"""Curation steps without Presidio: accounting, conflicts, cross-split dedup, splitting."""

import pandas as pd
import pytest

from tasks.curation.curate import clean_rows, drop_cross_split_duplicates, stratified_split
from tasks.curation.report import RowAccounting
from thaw.config import ThawConfig


def frame(rows):
    return pd.DataFrame(rows, columns=["id", "text", "label"])


def test_near_duplicate_of_a_test_row_is_removed_from_train():
    cfg = ThawConfig.model_validate({"curation": {"dedup": {"threshold": 0.8}}})
    test = frame([("t1", "where is my order 123, tracking has not moved in days", "delivery")])
    validation = frame([("v1", "please cancel my subscription today", "cancel")])
    train = frame(
        [
            ("a", "Where is my order 123? Tracking has not moved in days!", "delivery"),
            ("b", "my card was stolen at the station yesterday", "card"),
            ("c", "please cancel my subscription today", "cancel"),
        ]
    )
    accounting = RowAccounting()
    out = drop_cross_split_duplicates({"train": train, "validation": validation, "test": test}, cfg, accounting)
    assert out["train"]["id"].tolist() == ["b"]
    assert out["test"]["id"].tolist() == ["t1"] and out["validation"]["id"].tolist() == ["v1"]
    removed = {s["stage"]: s["removed"] for s in accounting.stages}
    assert removed["train:cross_split_exact"] == {"exact_duplicate_of_eval": 1}
    assert removed["train:cross_split_near"] == {"near_duplicate_of_eval": 1}


@pytest.mark.parametrize("near", [True, False])
def test_rows_that_differ_only_in_a_pseudonym_are_duplicates_under_any_key(near):
    """Compared in the model's form (each pseudonym its entity type): a training row that
    is a test row with another name is leakage, found by the exact check alone when near
    duplicates are off, and the splits kept are the same whatever the PII key spelled."""
    cfg = ThawConfig.model_validate({"curation": {"dedup": {"near_duplicates": near}}})

    def splits(key: str) -> dict:
        name = lambda i: f"<PERSON_{key}{i}>"  # noqa: E731  another key: other hex digits
        return {
            "test": frame([("t1", f"call {name(1)} about the refund", "refund")]),
            "validation": frame([("v1", f"{name(2)} cannot log in to the portal since monday", "login")]),
            "train": frame(
                [
                    ("a", f"call {name(3)} about the refund", "refund"),
                    ("b", f"my card was stolen, ask {name(4)} to block it", "card"),
                    ("c", f"{name(5)} cannot log in to the portal since monday", "login"),
                ]
            ),
        }

    kept = []
    for key in ("a1b2c", "9f8e7"):
        out = drop_cross_split_duplicates(splits(key), cfg, RowAccounting())
        kept.append({split: f["id"].tolist() for split, f in out.items()})
    assert kept[0] == kept[1]
    assert kept[0] == {"test": ["t1"], "validation": ["v1"], "train": ["b"]}


def test_label_conflicts_are_reported_and_resolved_by_policy():
    rows = [
        ("1", "refund please", "refund"),
        ("2", "Refund  please", "refund"),
        ("3", "refund please", "billing"),
        ("4", "hello", "greet"),
    ]
    for policy, kept in (("majority", ["1", "4"]), ("drop", ["4"])):
        cfg = ThawConfig.model_validate({"curation": {"dedup": {"label_conflicts": policy}}})
        accounting = RowAccounting()
        out = clean_rows(frame(rows), cfg, accounting, "train")
        assert out["id"].tolist() == kept
        stage = next(s for s in accounting.stages if s["stage"] == "train:label_conflicts")
        assert stage["conflicting_texts"] == 1 and stage["policy"] == policy
        assert sum(stage["removed"].values()) == (1 if policy == "majority" else 3)


def test_every_removal_is_counted_and_sampled():
    cfg = ThawConfig.model_validate({"data": {"max_text_chars": 10, "long_text_policy": "reject"}})
    rows = [("1", "", "a"), ("2", "ok", ""), ("3", "far too long a text", "a"), ("4", "fine", "a"), ("5", "FINE", "a")]
    accounting = RowAccounting()
    out = clean_rows(frame(rows), cfg, accounting, "train")
    assert out["id"].tolist() == ["4"]
    removed = {k: v for s in accounting.stages for k, v in s["removed"].items()}
    assert removed == {"empty_text": 1, "missing_label": 1, "too_long": 1, "exact_duplicate": 1}
    assert set(accounting.removed_samples) == set(removed)


def test_split_is_stratified_and_seeded():
    data = frame([(str(i), f"text {i}", "a" if i % 3 else "b") for i in range(300)])
    cfg = ThawConfig().split
    one, two = stratified_split(data, cfg), stratified_split(data, cfg)
    assert all(one[s]["id"].tolist() == two[s]["id"].tolist() for s in one)
    for split in ("validation", "test"):
        share_b = (one[split]["label"] == "b").mean()
        assert abs(share_b - 1 / 3) < 0.03
    assert sum(len(f) for f in one.values()) == 300


def test_the_smallest_class_that_gives_a_split_a_row_is_the_one_the_split_takes_it_from():
    for fraction in (0.15, 0.1, 0.25, 0.01):
        cfg = ThawConfig.model_validate({"split": {"validation_fraction": fraction, "test_fraction": fraction}}).split
        smallest = cfg.smallest_class_giving_a_row("validation")
        for rows in (2, 3, smallest - 1, smallest):
            data = frame([(f"{label}{i}", f"text {label} {i}", label) for label in "ab" for i in range(rows)])
            carved = stratified_split(data, cfg)["validation"]
            assert len(carved) == (2 if rows >= smallest else 0), (fraction, rows)
    assert ThawConfig().split.smallest_class_giving_a_row("test") == 4  # 0.15: round(3 x 0.15) is 0


@pytest.mark.parametrize("fractions", [(0.15, 0.15), (0.3, 0.3), (0.01, 0.25)])
def test_carving_leaves_every_class_three_training_rows(fractions):
    validation, test = fractions
    cfg = ThawConfig.model_validate({"split": {"validation_fraction": validation, "test_fraction": test}}).split
    sizes = list(range(1, 13)) + [40, 100]
    data = frame([(f"{n}-{i}", f"text {n} {i}", f"class{n}") for n in sizes for i in range(n)])
    for carve in (("validation", "test"), ("validation",), ("test",)):
        split = stratified_split(data, cfg, carve)
        assert sum(len(f) for f in split.values()) == len(data)
        for n in sizes:
            kept = {s: int((f["label"] == f"class{n}").sum()) for s, f in split.items()}
            assert kept["train"] >= min(n, 3), (carve, n, kept)
            assert {s: kept[s] for s in carve} == cfg.carve(n, carve), (carve, n)
    # a class of 4 gives test its row and keeps 3 (it gave validation one too, leaving 2)
    assert ThawConfig().split.carve(4) == {"test": 1, "validation": 0}
    assert ThawConfig().split.carve(100) == {"test": 15, "validation": 15}


def test_case_variants_of_a_text_column_read_as_labels_are_counted_and_the_first_twenty_named():
    """Text in the label column (the columns swapped) makes a group of nearly every label:
    the note stays bounded, and every group is counted."""
    from tasks.curation.curate import ROW, note_case_variants
    from tasks.curation.report import label_notes

    labels = [f"ticket {i}" for i in range(3000)] + [f"Ticket {i}" for i in range(3000)]
    frame = pd.DataFrame({"text": labels, "label": labels, ROW: range(1, 6001)})
    cfg = ThawConfig.model_validate({"data": {"train": "swapped.csv"}})
    accounting = RowAccounting()
    note_case_variants({"train": frame}, cfg, accounting)
    assert accounting.notes["label_case_variant_groups"] == 3000
    named = accounting.notes["label_case_variants"]
    assert len(named) == 20 and named[0] == {
        "Ticket 0": {"rows": 1, "first": "swapped.csv row 3001"},
        "ticket 0": {"rows": 1, "first": "swapped.csv row 1"},
    }
    lines = label_notes({"notes": accounting.notes})
    assert len(lines) == 21 and lines[-1] == "- **warning**: and 2980 more groups of labels that differ only in case"
