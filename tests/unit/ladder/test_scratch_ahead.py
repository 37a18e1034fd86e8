"""The from-scratch baseline is a yardstick, not a candidate: when it scores above the
selected rung, the selection, the transfer note and the model card say so. Rungs, and
the yardstick, are judged on the folds they share, never on headlines over other folds."""

from pathlib import Path

import pytest

from tasks.ladder.escalation import select_final_rung
from tasks.ladder.transfer_note import scratch_ahead_line
from thaw.config import ThawConfig
from thaw.rungs import EvaluationPlan, LadderContext, RungDetails, TrainedRung

FOLDS = [f"cv-r{r}-f{i}" for r in range(2) for i in range(5)]  # the first repeat's five, then the second's


def _rung(name: str, scores: list[float]) -> TrainedRung:
    mean = sum(scores) / len(scores)
    details = RungDetails(method=name, frozen="-", trainable_fraction_of_backbone=0.0, folds=len(scores))
    return TrainedRung(
        name, None, {"macro_f1": mean}, (), 0, details, dict(zip(FOLDS[: len(scores)], scores, strict=True))
    )


def _select(scratch: list[float], frozen: list[float], partial: list[float]):
    cfg = ThawConfig()
    plan = EvaluationPlan("cross-validation", 5, 1, 13, 2.0, 74, "test")
    ctx = LadderContext(None, ("ham", "spam"), cfg, Path("."), plan)
    trained = [_rung("frozen", frozen), _rung("partial", partial)]
    return select_final_rung.fn(trained, _rung("scratch", scratch), ctx)


@pytest.mark.parametrize("margin", [0.005, 0.06])
def test_a_scratch_baseline_above_the_selected_rung_is_on_record(margin):
    partial = [0.95, 0.94, 0.96, 0.95, 0.93]
    selection = _select([s + margin + 0.01 * (i % 2) for i, s in enumerate(partial)], [0.89] * 5, partial)
    assert selection.rung == "partial"
    ahead = selection.scratch_ahead
    assert (ahead.a, ahead.b) == ("partial", "scratch") and ahead.delta == pytest.approx(margin + 0.004)
    line = scratch_ahead_line({"a": ahead.a, "delta": ahead.delta, "p_value": ahead.p_value}, "cross-validation")
    assert line.startswith("**The from-scratch baseline scored above the selected rung**: +0.0")
    assert "over partial on the cross-validation folds" in line and "not a candidate" in line


def test_no_record_when_the_selected_rung_is_ahead_of_scratch():
    selection = _select([0.90] * 5, [0.89, 0.90, 0.88, 0.89, 0.90], [0.95, 0.94, 0.96, 0.95, 0.93])
    assert selection.rung == "partial" and selection.scratch_ahead is None


def test_scratch_is_judged_on_the_folds_both_ran_not_on_its_headline():
    # scratch ran two repeats, partial one: scratch's mean over ten folds (0.95) is above
    # partial's over five (0.94), but on the five they share scratch is behind
    scratch = [0.93] * 5 + [0.97] * 5
    selection = _select(scratch, [0.89] * 10, [0.94, 0.95, 0.93, 0.94, 0.94])
    assert selection.rung == "partial" and selection.scratch_ahead is None
    # and the other way round: behind on its headline, ahead on the shared folds
    selection = _select([0.95] * 5 + [0.90] * 5, [0.89] * 10, [0.94, 0.93, 0.94, 0.93, 0.94])
    assert selection.rung == "partial" and selection.scratch_ahead.delta == pytest.approx(0.014)


def test_rungs_are_ranked_on_the_folds_all_of_them_ran_not_on_their_headlines():
    # frozen ran two repeats, partial one: frozen's mean over ten folds (0.92) is above
    # partial's over five (0.904), but on the five they share partial leads by 0.05 on every one
    frozen = [0.85, 0.86, 0.85, 0.86, 0.85] + [0.99] * 5
    selection = _select([0.5] * 5, frozen, [0.90, 0.91, 0.90, 0.91, 0.90])
    assert selection.rung == "partial"
    assert "partial has the best validation metric (0.9040)" in selection.reason
    assert selection.reason.endswith("(rungs ranked on the 5 folds all of them ran)")
    # with the same folds on both, no such note
    selection = _select([0.5] * 5, frozen[:5], [0.90, 0.91, 0.90, 0.91, 0.90])
    assert selection.rung == "partial" and "ranked on" not in selection.reason
