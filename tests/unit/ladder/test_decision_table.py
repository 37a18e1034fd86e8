"""Truth table of the decision table (label count, domain gap, whether reuse works) and of
the choice between held-out validation and cross-validation."""

import pytest

from thaw.decision_table import evaluation_plan, ladder_plan
from thaw.rung_registry import rung_names
from thaw.rungs import DataEvidence


def evidence(median=50.0, fragmented=0.05, gap=0.03, p=0.9):
    return DataEvidence(
        classes=10,
        train_rows=int(median * 10),
        rows_per_class_min=int(median),
        rows_per_class_median=median,
        fragmented_word_share=fragmented,
        neighbour_accuracy=0.8,
        frozen_minus_scratch=gap,
        frozen_vs_scratch_p=p,
        frozen_metric=0.85,
    )


@pytest.mark.parametrize(
    "facts,suggestion,rungs",
    [
        (evidence(median=8), "fewshot", ("fewshot",)),  # few labels: contrastive pairs, nothing heavier
        (evidence(gap=-0.05, p=0.01), "full", ("partial", "full")),  # reuse fails: far domain
        (evidence(gap=-0.09, p=0.0), "full", ("partial", "full")),  # p=0.000 (GoEmotions, all rows)
        (evidence(median=40, gap=-0.09, p=0.0), "full", ("partial", "full")),  # even with moderate labels
        (evidence(gap=-0.01, p=0.40), "peft", ("peft", "partial", "full")),  # slightly worse, but within noise
        (evidence(fragmented=0.30), "full", ("partial", "full")),  # the tokenizer shreds the text
        (evidence(median=100), "full", ("partial", "full")),  # many labels, reuse works
        (evidence(median=40), "peft", ("peft", "partial", "full")),  # moderate labels, reuse works
    ],
)
def test_the_first_move_follows_labels_gap_and_reuse(facts, suggestion, rungs):
    plan = ladder_plan(facts, rung_names(), alpha=0.05)
    assert plan.suggestion == suggestion and plan.rungs == rungs
    if facts.frozen_minus_scratch < 0 and facts.frozen_vs_scratch_p < 0.05:
        assert any("reuse fails" in r for r in plan.reasons) and not any("reuse works" in r for r in plan.reasons)
    assert any("rows per class" in r for r in plan.reasons) and any("domain gap" in r for r in plan.reasons)


def test_only_configured_rungs_are_planned_and_the_table_can_be_turned_off():
    assert ladder_plan(evidence(median=40), ("frozen", "peft"), 0.05).rungs == ("peft",)
    assert ladder_plan(evidence(median=8), ("frozen", "peft"), 0.05).rungs == ()
    assert ladder_plan(evidence(median=100), ("frozen", "peft"), 0.05).rungs == ()
    off = ladder_plan(evidence(median=8), rung_names(), 0.05, follow_table=False)
    assert off.rungs == ("fewshot", "peft", "partial", "full") and "decision table off" in off.reasons[-1]


def test_validation_big_enough_is_used_as_is_else_cross_validation():
    holdout = evaluation_plan(150, 20, 0.05, 0.05, folds=5, repeats=2, seed=13, min_class_rows=100)
    assert not holdout.cross_validated and "20 rows per class" in holdout.reason  # CLINC150's validation
    cv = evaluation_plan(77, 1.5, 0.05, 0.05, folds=5, repeats=2, seed=13, min_class_rows=10)
    assert cv.cross_validated and (cv.folds, cv.repeats, cv.needed_per_class) == (5, 2, 3)  # 10-shot
    demo = evaluation_plan(10, 28, 0.05, 0.05, folds=5, repeats=2, seed=13, min_class_rows=200)
    assert not demo.cross_validated and demo.needed_per_class == 15
    rare = evaluation_plan(77, 0, 0.05, 0.05, folds=5, repeats=2, seed=13, min_class_rows=2)
    assert rare.folds == 2  # no more folds than the rarest class has rows


def test_folds_are_stratified_disjoint_and_cover_every_row():
    plan = evaluation_plan(3, 1, 0.02, 0.05, folds=3, repeats=2, seed=1, min_class_rows=6)
    labels = ["a"] * 6 + ["b"] * 6 + ["c"] * 7
    folds = plan.fold_rows(labels)
    assert len(folds) == 6 and len({name for name, _, _ in folds}) == 6
    for repeat in ("cv-r0", "cv-r1"):
        held = [h for name, _, h in folds if name.startswith(repeat)]
        assert sorted(p for h in held for p in h) == list(range(len(labels)))  # each row held out once per repeat
    for _, kept, held in folds:
        assert not set(kept) & set(held)
        assert {labels[p] for p in held} == {"a", "b", "c"}  # every class in every held-out fold
