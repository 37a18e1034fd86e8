"""The decision table of seed document 002 and the choice of how rungs are scored: pure
functions over the evidence (``thaw.rungs.DataEvidence``), with truth-table tests."""

from __future__ import annotations

from collections.abc import Sequence

from thaw.gate import rows_per_class_needed
from thaw.rung_registry import FAR_DOMAIN, FEW_LABELS, MANY_LABELS, MODERATE, rung_method, rung_methods
from thaw.rungs import DataEvidence, EvaluationPlan, LadderPlan

FEW_LABELS_BELOW = 16  # median rows per class below which the few-shot (contrastive) rung comes first
MANY_LABELS_FROM = 80  # median rows per class from which whole-backbone fine-tuning pays (measured on CLINC150)
# Share of distinct words (letters only) the tokenizer cuts into 3+ pieces from which text
# is far from the backbone's. Measured with MiniLM's tokenizer on 4,000 rows each:
# CLINC150 0.085, GoEmotions 0.105, licence texts 0.102, the demo's pseudonymised tickets
# 0.010, scientific-library docstrings 0.186.
FRAGMENTED = 0.15


def ladder_plan(
    evidence: DataEvidence, configured: Sequence[str], alpha: float, follow_table: bool = True
) -> LadderPlan:
    """The decision table of seed document 002: which rungs to climb after the frozen
    one, given the label count, the domain gap and whether reuse already works.

    - few labels (median < FEW_LABELS_BELOW rows per class): the few-shot rung (contrastive
      pairs make many training signals of few rows); a classification loss on so few rows
      overfits whatever it opens, so PEFT, partial and full are skipped;
    - reuse fails (frozen significantly worse than scratch) or the tokenizer shreds the
      text (>= FRAGMENTED of words in 3+ pieces): the domain is far, adapters on frozen
      weights are not enough: straight to partial and full;
    - many labels (median >= MANY_LABELS_FROM): enough data to move the whole backbone: PEFT
      is skipped, partial and full are tried;
    - otherwise reuse works and labels are moderate: PEFT first, deeper only on evidence.
    Which rungs each situation plans is the rungs' own (``RungMethod.planned_in`` and
    ``first_in`` in ``thaw.rung_methods``). Rungs not configured are left out; the frozen
    rung always runs first.
    """
    later = [r for r in configured if rung_method(r).adapted]
    facts = _evidence_lines(evidence)
    if not follow_table:
        return LadderPlan("as configured", tuple(later), (*facts, "decision table off: every configured rung in order"))
    situation, why = regime(evidence, alpha)
    methods = rung_methods()
    suggestion = next((m.name for m in methods if situation in m.first_in), None)
    if suggestion is None:
        suggestion = next((m.name for m in methods if m.adapted and situation in m.planned_in), "as configured")
    rungs = tuple(r for r in later if situation in rung_method(r).planned_in)
    skipped = [r for r in later if r not in rungs]
    reasons = (*facts, why, *([f"skipped: {', '.join(skipped)}"] if skipped else []))
    return LadderPlan(suggestion, rungs, reasons)


def regime(evidence: DataEvidence, alpha: float) -> tuple[str, str]:
    """Which situation of the decision table the data is in, and why. Each rung says in
    which situations it is planned (``RungMethod.planned_in``)."""
    negative = (
        evidence.frozen_minus_scratch is not None
        and evidence.frozen_minus_scratch < 0
        and evidence.frozen_vs_scratch_p is not None
        and evidence.frozen_vs_scratch_p < alpha  # a p of 0.000 is the strongest evidence, not none
    )
    if evidence.rows_per_class_median < FEW_LABELS_BELOW:
        return FEW_LABELS, (
            f"few labels ({evidence.rows_per_class_median:g} rows per class, median < {FEW_LABELS_BELOW}): "
            "contrastive pairs; rungs trained by a classification loss skipped (too few rows)"
        )
    if negative or evidence.fragmented_word_share >= FRAGMENTED:
        gap = (
            "reuse fails (frozen significantly below scratch)"
            if negative
            else (f"the tokenizer cuts {evidence.fragmented_word_share:.0%} of words into 3+ pieces")
        )
        return FAR_DOMAIN, f"large domain gap: {gap}; adapters on frozen weights skipped"
    if evidence.rows_per_class_median >= MANY_LABELS_FROM:
        return MANY_LABELS, (
            f"many labels ({evidence.rows_per_class_median:g} rows per class, median >= {MANY_LABELS_FROM}) and "
            "reuse works: enough data to move the whole backbone; adapters skipped"
        )
    return MODERATE, "moderate labels and reuse works: adapters first, deeper only on evidence"


def _evidence_lines(e: DataEvidence) -> tuple[str, ...]:
    lines = [
        f"{e.classes} classes, {e.train_rows} training rows; rows per class min {e.rows_per_class_min}, "
        f"median {e.rows_per_class_median:g}",
        f"domain gap: {e.fragmented_word_share:.1%} of words cut into 3+ pieces by the backbone's tokenizer; "
        f"1-NN accuracy of frozen features {e.neighbour_accuracy:.3f}",
    ]
    if e.frozen_minus_scratch is not None:
        lines.append(
            f"reuse: frozen {e.frozen_metric:.4f}, frozen minus scratch {e.frozen_minus_scratch:+.4f} "
            f"(p={e.frozen_vs_scratch_p:.3f} that scratch is better)"
        )
    return tuple(lines)


def evaluation_plan(
    classes: int,
    validation_rows_per_class: float,
    min_gain: float,
    alpha: float,
    folds: int,
    repeats: int,
    seed: int,
    min_class_rows: int,
):
    """Hold-out validation when it has the rows a paired test needs to see ``min_gain``,
    else repeated stratified k-fold over train + validation (k no larger than the rarest
    class allows, at least 2)."""
    needed = rows_per_class_needed(classes, min_gain, alpha)
    if validation_rows_per_class >= needed:
        reason = f"validation has {validation_rows_per_class:g} rows per class (median), >= {needed} needed"
        return EvaluationPlan("holdout", 0, 0, seed, validation_rows_per_class, needed, reason)
    k = max(2, min(folds, min_class_rows))
    reason = (
        f"validation has {validation_rows_per_class:g} rows per class (median), fewer than the {needed} a paired "
        f"test needs to see a {min_gain:.0%} gain at alpha {alpha}: {repeats} x {k}-fold cross-validation "
        "over train + validation instead"
    )
    return EvaluationPlan("cross-validation", k, repeats, seed, validation_rows_per_class, needed, reason)
