"""The escalation gate of the adaptation ladder: pure functions over numbers.

``paired_comparison`` compares two rungs on the same validation examples with a paired
bootstrap; ``escalation_decision`` says whether to climb after a rung; ``select_rung``
picks the simplest rung within one standard error of the best (or not significantly
worse than it). No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """B minus A on the validation metric, its interval, a one-sided p-value (B > A) and
    the standard error of the difference (None where it was not estimated).

    ``log_loss``: the same two rungs over the same cross-validation folds on out-of-fold
    log-loss, as B's gain (A's loss minus B's), where both rungs gave probabilities. The
    metric is a count of right answers: on folds of a few rows two models often score
    alike on every fold while one of them is far surer of the right class. Log-loss is
    a proper scoring rule (Gneiting and Raftery, 2007): continuous, and in expectation
    best for the model whose probabilities are right, so it sees what such folds hide.
    Each fold's log-loss is read at a temperature fitted on the other folds of its
    repeat (``tasks.ladder.cross_validation.recalibrated_fold_losses``), so a model is
    not ahead for being surer on average, which is its regularisation's doing. It
    counts for B only where B does not score lower on the metric."""

    a: str
    b: str
    delta: float
    low: float
    high: float
    p_value: float
    se: float | None = None
    log_loss: Comparison | None = None

    def b_better(self, alpha: float) -> bool:
        """B significantly ahead at ``alpha``: on the metric, or on log-loss without
        scoring lower on the metric."""
        if self.p_value < alpha and self.delta > 0:
            return True
        return self.log_loss is not None and self.delta >= 0 and self.log_loss.b_better(alpha)

    def b_ahead_by_one_se(self) -> bool:
        """B's lead beyond one standard error: on the metric, or on log-loss without
        scoring lower on the metric (False where no standard error was estimated)."""
        if self.se is not None and self.delta > self.se:
            return True
        loss = self.log_loss
        return loss is not None and loss.se is not None and self.delta >= 0 and loss.delta > loss.se

    def figures(self) -> str:
        """The numbers behind a decision, for its reason: delta, se, p (and log-loss's)."""
        text = f"delta {self.delta:+.4f}" + (f", se {self.se:.4f}" if self.se is not None else "")
        text += f", p={self.p_value:.3f}"
        if self.log_loss is not None:
            loss = self.log_loss
            text += f"; log-loss gain {loss.delta:+.4f}" + (f", se {loss.se:.4f}" if loss.se is not None else "")
            text += f", p={loss.p_value:.3f}"
        return text


@dataclass(frozen=True)
class RungScore:
    """A rung's validation metric and per-example predictions (for paired tests)."""

    rung: str
    metric: float
    predictions: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What the gate decided after a rung, and why, with its numbers."""

    after: str
    action: Literal["escalate", "stop"]
    reason: str
    best: str
    comparison: Comparison | None = None


def paired_comparison(
    y_true: Sequence[str],
    a: RungScore,
    b: RungScore,
    metric: str,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap over the same examples of metric(b) - metric(a), stratified by
    class (every resample keeps every class), over the classes present.

    The p-value is the share of resamples where b does not beat a (one-sided); the
    interval always holds the observed delta.
    """
    from thaw.metrics import StratifiedBootstrap, accuracy_codes, encode, macro_f1_codes, percentile_interval

    labels = sorted(set(y_true))
    t, pa, k = encode(y_true, a.predictions, labels)
    _, pb, _ = encode(y_true, b.predictions, labels)

    def score(idx: np.ndarray | slice, pred: np.ndarray) -> float:
        return accuracy_codes(t[idx], pred[idx]) if metric == "accuracy" else macro_f1_codes(t[idx], pred[idx], k)

    boot = StratifiedBootstrap(t, seed)
    deltas = np.empty(samples)
    for i in range(samples):
        idx = boot.sample()
        deltas[i] = score(idx, pb) - score(idx, pa)
    everything = slice(None)
    delta = score(everything, pb) - score(everything, pa)
    low, high = percentile_interval(deltas, delta, confidence)
    p = float((np.sum(deltas <= 0) + 1) / (samples + 1))
    return Comparison(a.rung, b.rung, float(delta), low, high, p, float(deltas.std(ddof=1)))


def escalation_decision(
    after: str,
    best: str,
    best_metric: float,
    comparison: Comparison | None,
    target: float,
    alpha: float,
    rungs_left: int,
    budget_left_s: float,
) -> Decision:
    """Whether to climb after rung ``after``.

    ``comparison`` is ``after`` against the best simpler rung (None for the first rung).
    Stops when the best meets ``target`` (saying how many planned rungs that leaves
    untried: on all of CLINC150 it stops at partial, where full fine-tuning scored higher),
    when this escalation brought no significant gain, or when no rung or time budget is
    left; otherwise escalates.
    """
    if comparison is not None and not comparison.b_better(alpha):
        return Decision(
            after,
            "stop",
            f"no significant gain over {comparison.a} ({comparison.figures()}; alpha {alpha})",
            best,
            comparison,
        )
    gain = "" if comparison is None else f"; gain over {comparison.a}: {comparison.figures()}"
    if best_metric >= target:
        untried = (
            f"; {rungs_left} planned rung{'s' if rungs_left > 1 else ''} left untried (ladder.target)"
            if rungs_left > 0
            else ""
        )
        return Decision(
            after, "stop", f"{best} meets the target ({best_metric:.4f} >= {target}{gain}){untried}", best, comparison
        )
    if rungs_left <= 0:
        return Decision(after, "stop", "no rung left in the ladder", best, comparison)
    if budget_left_s <= 0:
        return Decision(after, "stop", "time budget spent", best, comparison)
    return Decision(
        after, "escalate", f"{best} below the target ({_below(best_metric, target)} < {target}{gain})", best, comparison
    )


def _below(metric: float, target: float) -> str:
    """``metric`` with enough digits to show it is below ``target`` (0.96996, not 0.9700)."""
    digits = 4
    while round(metric, digits) >= target and digits < 10:
        digits += 1
    return f"{metric:.{digits}f}"


SelectionRule = Literal["one_se", "significance"]


def select_rung(
    scores: Sequence[RungScore],
    comparisons_to_best: dict[str, Comparison],
    alpha: float,
    rule: SelectionRule = "one_se",
) -> tuple[str, str]:
    """(selected rung, reason): the simplest rung the evidence cannot tell from the best.

    ``scores`` are in ladder order; ``comparisons_to_best[r]`` compares r (as a) with the
    best (as b). The best is the highest metric. ``rule``:

    - ``one_se``: the simplest rung whose shortfall is at most one standard error of the
      paired difference (the one-standard-error rule of Breiman et al., 1984). A simpler
      rung is dropped once the best's lead is more likely real than not (about p < 0.16).
    - ``significance``: the simplest rung not significantly worse at ``alpha``. It keeps
      the simpler rung unless the gain is large for the rows at hand, so a real gain of
      a point or two on a few thousand rows is thrown away more often than not.

    Either rule reads a cross-validated comparison's log-loss as well (``Comparison``):
    the best's lead there drops the simpler rung too, unless it scores lower on the
    metric. A comparison without a standard error is judged by significance.
    """
    best = max(scores, key=lambda s: s.metric)
    behind = []
    for s in scores:
        if s.rung == best.rung:
            break
        cmp = comparisons_to_best[s.rung]
        one_se = rule == "one_se" and (cmp.se is not None or (cmp.log_loss is not None and cmp.log_loss.se is not None))
        if not cmp.b_ahead_by_one_se() if one_se else not cmp.b_better(alpha):
            how = "within one standard error of" if one_se else "not significantly worse than"
            return s.rung, f"{s.rung} is {how} the best, {best.rung} ({cmp.figures()}); simplest wins"
        behind.append(f"{s.rung} ({cmp.figures()})")
    reason = f"{best.rung} has the best validation metric ({best.metric:.4f})"
    return best.rung, reason + (f"; ahead of {', '.join(behind)}" if behind else "")


def negative_transfer(scratch: RungScore, frozen: RungScore, comparison: Comparison, alpha: float) -> bool:
    """True when the frozen rung is significantly worse than the scratch baseline
    (``comparison`` is frozen as a, scratch as b)."""
    return comparison.a == frozen.rung and comparison.b == scratch.rung and comparison.b_better(alpha)


def required_validation_rows(min_gain: float, alpha: float, power: float = 0.8, discordance: float = 0.06) -> int:
    """Validation rows a paired (McNemar) test needs to detect an accuracy gain of
    ``min_gain`` at level ``alpha`` (one-sided) with probability ``power``, when the two
    models disagree on a share ``discordance`` of the examples (Connor, 1987):

        n = ((z_a * sqrt(d) + z_b * sqrt(d - g^2)) / g)^2

    At alpha 0.05, power 0.8 and 6% disagreement: 147 rows for a 5-point gain (the default
    ``ladder.min_detectable_gain``), 926 for a 2-point one; fewer, and every escalation
    decision is mostly noise.
    """
    from scipy.stats import norm

    z_a, z_b = norm.ppf(1 - alpha), norm.ppf(power)
    d, g = discordance, min_gain
    return int(np.ceil(((z_a * np.sqrt(d) + z_b * np.sqrt(max(d - g * g, 1e-12))) / g) ** 2))


def rows_per_class_needed(classes: int, min_gain: float, alpha: float) -> int:
    """Rows per class the validation split needs (never fewer than 3: macro-F1 over a
    class seen once or twice is a coin toss)."""
    return max(3, int(np.ceil(required_validation_rows(min_gain, alpha) / max(classes, 1))))


def cross_validated_comparison(
    a: str,
    b: str,
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    train_fraction: float,
    confidence: float = 0.95,
    log_loss: Comparison | None = None,
) -> Comparison:
    """b minus a over the same folds of repeated k-fold cross-validation, with Nadeau and
    Bengio's corrected resampled t-test (folds overlap, so the plain t-test is far too
    sure of itself): var * (1/J + n_test/n_train), t with J-1 degrees of freedom.
    ``log_loss``: the same comparison of the folds' log-loss, carried along (Comparison)."""
    from scipy.stats import t as student

    d = np.asarray(scores_b, dtype=float) - np.asarray(scores_a, dtype=float)
    j = len(d)
    delta = float(d.mean())
    if j < 2:
        return Comparison(a, b, delta, delta, delta, 1.0 if delta <= 0 else 0.5, log_loss=log_loss)
    se = _corrected_se(d, train_fraction)
    if se == 0:
        return Comparison(a, b, delta, delta, delta, 0.0 if delta > 0 else 1.0, 0.0, log_loss)
    p = float(student.sf(delta / se, j - 1))
    half = float(student.ppf(0.5 + confidence / 2, j - 1) * se)
    return Comparison(a, b, delta, delta - half, delta + half, p, se, log_loss)


def _corrected_se(values: np.ndarray, train_fraction: float) -> float:
    """Nadeau and Bengio's standard error of a mean over overlapping folds."""
    test_over_train = (1 - train_fraction) / train_fraction
    return float(np.sqrt(values.var(ddof=1) * (1 / len(values) + test_over_train)))


def cross_validated_estimate(
    scores: Sequence[float], train_fraction: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """A rung's score over every fold of every repeat: (mean, low, high), the interval
    corrected as in ``cross_validated_comparison`` and clipped to [0, 1]."""
    from scipy.stats import t as student

    values = np.asarray(scores, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(student.ppf(0.5 + confidence / 2, len(values) - 1) * _corrected_se(values, train_fraction))
    return mean, max(0.0, mean - half), min(1.0, mean + half)
