"""The promotion gate: may a challenger become champion? A pure function over facts.

The task around it gathers the facts (is it the current challenger, was it rejected,
does it beat the champion on the same test set, does its lineage re-verify) and records
the outcome; this module only decides, with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thaw.gate import Comparison


@dataclass(frozen=True)
class PromotionFacts:
    """What is known about a candidate at approval time."""

    version: str
    is_current_challenger: bool
    rejected: bool
    has_champion: bool
    versus_champion: Comparison | None  # champion as a, challenger as b, on the same test set
    lineage_problems: tuple[str, ...]
    lineage_notes: tuple[str, ...] = ()  # what the raw-data policy keeps out of the re-check
    force: bool = False
    force_reason: str = ""
    comparison_summary: str = ""  # metric, rows used and left out, scores: quoted in the reasons
    live_breaches: tuple[str, ...] = ()  # canary breaches recorded against it in front of live traffic
    live_summary: str = ""  # what live traffic says, quoted when it passes


@dataclass(frozen=True)
class PromotionDecision:
    """Promote or refuse, the reasons, and whether a --force overrode a failed check."""

    promote: bool
    reasons: tuple[str, ...]
    forced: bool = False
    failed_checks: tuple[str, ...] = field(default=())


def promotion_decision(facts: PromotionFacts, alpha: float) -> PromotionDecision:
    """Promote when the candidate is the current, unrejected challenger, beats the champion
    by a paired test (or there is none), its canary (if it had one) did not breach and its
    lineage re-verifies; ``force`` (with a reason) overrides only the performance, live and
    lineage checks, and is recorded as forced."""
    if not facts.is_current_challenger:
        return PromotionDecision(False, (f"version {facts.version} is not the current challenger",))
    if facts.rejected:
        return PromotionDecision(False, (f"version {facts.version} was rejected",))
    failed, passed = [], []
    how = f": {facts.comparison_summary}" if facts.comparison_summary else ""
    if not facts.has_champion:
        passed.append("no champion yet: nothing to beat")
    elif facts.versus_champion is None:
        failed.append(facts.comparison_summary or "no comparison with the champion on examples unseen by both")
    elif facts.versus_champion.b_better(alpha):
        c = facts.versus_champion
        passed.append(f"beats champion v{c.a} (p={c.p_value:.3f} < {alpha}){how}")
    else:
        c = facts.versus_champion
        failed.append(f"does not beat champion v{c.a} (p={c.p_value:.3f} >= {alpha}){how}")
    if facts.live_breaches:
        failed += [f"its canary breached: {b}" for b in facts.live_breaches]
    elif facts.live_summary:
        passed.append(facts.live_summary)
    if facts.lineage_problems:
        failed += [f"lineage: {p}" for p in facts.lineage_problems]
    else:
        passed.append(
            "; ".join(("lineage re-verified against the run's logged inputs and the DVC remote", *facts.lineage_notes))
        )
    if not failed:
        return PromotionDecision(True, tuple(passed))
    if facts.force and facts.force_reason.strip():
        return PromotionDecision(True, tuple(passed) + (f"FORCED: {facts.force_reason.strip()}",), True, tuple(failed))
    return PromotionDecision(False, tuple(failed), False, tuple(failed))
