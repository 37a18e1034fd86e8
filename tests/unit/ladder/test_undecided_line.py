"""The transfer note's "undecided" line: said only when a gate comparison's interval spans
zero, and it names what was registered all the same."""

from __future__ import annotations

import pytest

from tasks.ladder.transfer_note import undecided
from thaw.gate import Comparison, Decision
from thaw.rungs import EvaluationPlan

CV = EvaluationPlan("cross-validation", 5, 1, 13, 2.0, 3, "too few validation rows")
HOLDOUT = EvaluationPlan("holdout", 0, 0, 13, 40.0, 3, "enough validation rows")


def decision(after: str, low: float, high: float, a: str = "frozen") -> Decision:
    comparison = Comparison(a, after, (low + high) / 2, low, high, 0.2, 0.01)
    return Decision(after, "stop", "no significant gain", a, comparison)


def test_a_decided_gate_has_no_undecided_line():
    assert undecided([Decision("frozen", "escalate", "below target", "frozen")], CV, "frozen", "one_se") is None
    assert undecided([decision("fewshot", 0.004, 0.03)], CV, "fewshot", "one_se") is None


@pytest.mark.parametrize(
    ("selected", "says"),
    [
        ("frozen", "the simpler rung, frozen, was kept"),
        ("fewshot", "fewshot was selected all the same (ladder.selection: one_se)"),
    ],
)
def test_an_interval_spanning_zero_is_said_with_what_was_registered(selected, says):
    line = undecided([decision("fewshot", -0.4003, 0.7336)], CV, selected, "one_se")
    assert line == (
        "undecided: on the cross-validation folds, the gain of fewshot over frozen has an interval spanning zero "
        f"(-0.4003 to +0.7336), {says}; more labelled rows would be needed to tell"
    )


def test_each_undecided_comparison_is_named_on_the_split_it_was_made_on():
    decisions = [decision("peft", -0.01, 0.02), decision("partial", -0.02, 0.01, a="peft")]
    line = undecided(decisions, HOLDOUT, "full", "significance")
    assert line.startswith("undecided: on the validation split, the gain of peft over frozen")
    assert "the gain of partial over peft has an interval spanning zero (-0.0200 to +0.0100), full was selected" in line


def test_a_selection_on_log_loss_says_so():
    """SpamAssassin at 10 per class: the metric's interval spans zero, few-shot was
    registered on its log-loss lead; the line names that lead."""
    loss = Comparison("frozen", "fewshot", 0.1395, -0.0650, 0.3440, 0.066, 0.0737)
    comparison = Comparison("frozen", "fewshot", 0.0533, -0.1688, 0.2754, 0.271, 0.0800, loss)
    line = undecided(
        [Decision("fewshot", "stop", "no significant gain", "frozen", comparison)], CV, "fewshot", "one_se"
    )
    assert (
        "fewshot was selected all the same, on its log-loss lead (+0.1395, se 0.0737; ladder.selection: one_se)" in line
    )
    within = Comparison("frozen", "fewshot", 0.1395, -0.3, 0.6, 0.3, 0.2000)  # log-loss lead within one se
    behind = Comparison("frozen", "fewshot", 0.0533, -0.1688, 0.2754, 0.271, 0.0800, within)
    assert "all the same (ladder.selection: one_se)" in undecided(
        [Decision("fewshot", "stop", "no significant gain", "frozen", behind)], CV, "fewshot", "one_se"
    )
