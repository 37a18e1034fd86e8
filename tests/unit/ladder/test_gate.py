"""Truth table of the escalation gate, and the paired test it relies on."""

import pytest

from thaw.gate import Comparison, RungScore, escalation_decision, negative_transfer, paired_comparison, select_rung

SIG = Comparison("frozen", "peft", 0.05, 0.02, 0.08, 0.001)  # peft significantly better
NOISE = Comparison("frozen", "peft", 0.004, -0.01, 0.02, 0.30)  # within noise


@pytest.mark.parametrize(
    "comparison,best_metric,rungs_left,budget,action,reason",
    [
        (None, 0.80, 3, 100, "escalate", "below the target"),  # first rung, weak
        (None, 0.99, 3, 100, "stop", "meets the target"),  # first rung, strong
        (SIG, 0.90, 2, 100, "escalate", "below the target"),  # real gain, still short
        (SIG, 0.99, 2, 100, "stop", "meets the target"),  # real gain, done
        (SIG, 0.99, 2, 100, "stop", "2 planned rungs left untried (ladder.target)"),  # and says what it skips
        (SIG, 0.99, 1, 100, "stop", "1 planned rung left untried"),
        (NOISE, 0.90, 2, 100, "stop", "no significant gain"),  # gain is noise
        (SIG, 0.90, 0, 100, "stop", "no rung left"),  # ladder exhausted
        (SIG, 0.90, 2, 0, "stop", "time budget spent"),  # budget spent
    ],
)
def test_escalation_truth_table(comparison, best_metric, rungs_left, budget, action, reason):
    d = escalation_decision(
        "peft" if comparison else "frozen",
        "peft",
        best_metric,
        comparison,
        target=0.97,
        alpha=0.05,
        rungs_left=rungs_left,
        budget_left_s=budget,
    )
    assert d.action == action and reason in d.reason
    assert ("untried" in d.reason) == (d.action == "stop" and best_metric >= 0.97 and rungs_left > 0)


def test_paired_comparison_tells_gain_from_noise():
    y = ["a", "b"] * 200
    base = RungScore("frozen", 0.5, tuple("a" for _ in y))  # 50%
    better = RungScore("peft", 0.9, tuple(t if i % 10 else "x" for i, t in enumerate(y)))  # 90%
    same = RungScore("peft", 0.5, tuple("b" for _ in y))  # 50%, different errors
    assert paired_comparison(y, base, better, "accuracy").b_better(0.05)
    assert not paired_comparison(y, base, same, "accuracy").b_better(0.05)
    cmp = paired_comparison(y, base, better, "accuracy")
    assert cmp.low <= cmp.delta <= cmp.high and abs(cmp.delta - 0.4) < 1e-9


def test_selection_prefers_the_simplest_not_significantly_worse():
    scores = [RungScore("frozen", 0.90, ()), RungScore("peft", 0.91, ())]
    assert select_rung(scores, {"frozen": Comparison("frozen", "peft", 0.01, -0.01, 0.03, 0.2)}, 0.05)[0] == "frozen"
    assert select_rung(scores, {"frozen": Comparison("frozen", "peft", 0.01, 0.005, 0.03, 0.01)}, 0.05)[0] == "peft"


def test_one_standard_error_rule_keeps_a_simpler_rung_only_within_one_se():
    scores = [RungScore("frozen", 0.9070, ()), RungScore("fewshot", 0.9235, ())]
    # a 1.65-point lead, 1.7 standard errors: not significant at 0.05, but more likely real than not
    lead = Comparison("frozen", "fewshot", 0.0165, -0.0005, 0.0335, 0.057, 0.0095)
    assert select_rung(scores, {"frozen": lead}, 0.05, "significance")[0] == "frozen"
    rung, reason = select_rung(scores, {"frozen": lead}, 0.05, "one_se")
    assert rung == "fewshot" and "ahead of frozen (delta +0.0165, se 0.0095" in reason
    noise = Comparison("frozen", "fewshot", 0.004, -0.016, 0.024, 0.30, 0.010)
    rung, reason = select_rung(scores, {"frozen": noise}, 0.05, "one_se")
    assert rung == "frozen" and "within one standard error" in reason
    # no standard error estimated: judged by significance
    assert select_rung(scores, {"frozen": lead.__class__(*[*vars(lead).values()][:6])}, 0.05, "one_se")[0] == "frozen"


def test_one_se_rule_picks_the_simplest_of_three_within_reach():
    scores = [RungScore("frozen", 0.80, ()), RungScore("peft", 0.845, ()), RungScore("full", 0.85, ())]
    comparisons = {
        "frozen": Comparison("frozen", "full", 0.05, 0.03, 0.07, 0.001, 0.01),
        "peft": Comparison("peft", "full", 0.005, -0.01, 0.02, 0.3, 0.008),
    }
    assert select_rung(scores, comparisons, 0.05, "one_se")[0] == "peft"


def test_paired_comparison_estimates_its_standard_error_even_on_two_rows_per_class():
    y = ("a", "a", "b", "b")
    base = RungScore("frozen", 0.5, ("a", "b", "b", "a"))
    other = RungScore("peft", 1.0, y)
    cmp = paired_comparison(y, base, other, "accuracy", samples=200)
    assert cmp.se is not None and cmp.se >= 0 and cmp.delta == 0.5
    assert select_rung([base, other], {"frozen": cmp}, 0.05, "one_se")[0] in {"frozen", "peft"}


def test_negative_transfer_flag():
    frozen, scratch = RungScore("frozen", 0.6, ()), RungScore("scratch", 0.8, ())
    assert negative_transfer(scratch, frozen, Comparison("frozen", "scratch", 0.2, 0.1, 0.3, 0.001), 0.05)
    assert not negative_transfer(scratch, frozen, Comparison("frozen", "scratch", 0.01, -0.02, 0.04, 0.3), 0.05)


def test_fast_macro_f1_matches_sklearn():
    import numpy as np
    from sklearn.metrics import f1_score

    from thaw.metrics import encode, macro_f1_codes

    rng = np.random.default_rng(3)
    labels = ["a", "b", "c", "d"]
    y = rng.choice(labels[:3], 500)  # 'd' never occurs: scores 0, as sklearn does with labels=
    p = np.where(rng.random(500) < 0.7, y, rng.choice(labels + ["zzz"], 500))
    t_codes, p_codes, k = encode(y, p, labels)
    assert (
        abs(macro_f1_codes(t_codes, p_codes, k) - f1_score(y, p, labels=labels, average="macro", zero_division=0))
        < 1e-12
    )


def test_log_loss_tells_apart_rungs_whose_folds_score_alike():
    """SpamAssassin at 10 per class (19 mails, 5 folds of 4 or 3): few-shot right on every
    fold, frozen wrong on one row; the folds' log-loss (frozen's, few-shot's) as measured
    there. The metric's lead is within one standard error, log-loss's is not."""
    from thaw.gate import cross_validated_comparison

    frozen_loss, fewshot_loss = [0.622, 0.591, 0.369, 0.572, 0.380], [0.434, 0.385, 0.345, 0.311, 0.360]
    loss = cross_validated_comparison("frozen", "fewshot", [-x for x in frozen_loss], [-x for x in fewshot_loss], 0.8)
    assert loss.delta == pytest.approx(0.1398) and loss.se < loss.delta and 0.05 < loss.p_value < 0.1
    metric_only = cross_validated_comparison("frozen", "fewshot", [0.733, 1, 1, 1, 1], [1, 1, 1, 1, 1], 0.8)
    both = cross_validated_comparison("frozen", "fewshot", [0.733, 1, 1, 1, 1], [1, 1, 1, 1, 1], 0.8, log_loss=loss)
    scores = [RungScore("frozen", 0.9467, ()), RungScore("fewshot", 1.0, ())]
    assert select_rung(scores, {"frozen": metric_only}, 0.05, "one_se")[0] == "frozen"
    rung, reason = select_rung(scores, {"frozen": both}, 0.05, "one_se")
    assert rung == "fewshot" and "log-loss gain +0.1398" in reason
    # not significant at 0.05 either way: the significance rule and the climb keep frozen
    assert select_rung(scores, {"frozen": both}, 0.05, "significance")[0] == "frozen"
    assert not both.b_better(0.05) and both.b_better(0.1)


def test_log_loss_never_outweighs_a_metric_that_goes_the_other_way():
    sure = Comparison("frozen", "fewshot", 0.2, 0.1, 0.3, 0.001, 0.02)  # b far better on log-loss
    worse = Comparison("frozen", "fewshot", -0.01, -0.03, 0.01, 0.8, 0.01, sure)
    assert not worse.b_better(0.05) and not worse.b_ahead_by_one_se()
    level = Comparison("frozen", "fewshot", 0.0, 0.0, 0.0, 1.0, 0.0, sure)
    assert level.b_better(0.05) and level.b_ahead_by_one_se()
    decision = escalation_decision("fewshot", "fewshot", 0.9, level, 0.97, 0.05, 1, 100)
    assert decision.action == "escalate" and "log-loss gain +0.2000" in decision.reason
    decision = escalation_decision("fewshot", "frozen", 0.9, worse, 0.97, 0.05, 1, 100)
    assert decision.action == "stop" and "no significant gain" in decision.reason
