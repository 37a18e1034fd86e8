"""A challenger in front of live traffic: which model answers, when it is taken off, and
what its requests say about it.

Pure functions over recorded outcomes (``thaw.request_store`` keeps them; the server in
``tasks.serving.router`` makes them):

- ``answers_with_challenger``: the canary's share, decided from the request id's digest,
  so a given request always goes the same way and the share is exact in expectation;
- ``BreachWatch``: the challenger's last outcomes in the serving process, and whether
  they breach ``serving.canary`` (error or disagreement rate whose Wilson interval lies
  wholly above its threshold; p95 latency over an absolute or relative bound);
- ``canary_report``: agreement, latency and, where labels arrived, accuracy of each model,
  each with a 95% interval (Wilson for rates; distribution-free order statistics for a
  latency quantile).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from thaw.config import CanaryConfig
from thaw.metrics import wilson_interval

CHAMPION, CHALLENGER = "champion", "challenger"
MODES = ("champion", "shadow", "canary")


def answers_with_challenger(request_id: str, share: float) -> bool:
    """Whether the challenger answers this request under a canary of ``share`` (0-1)."""
    draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return draw < share


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank above), NaN on no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def quantile_interval(values: Sequence[float], q: float, confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the ``q`` quantile: the order statistics whose ranks
    bound the binomial count of values below it (NaN when there are too few values to say:
    a p95 from 20 requests has no upper bound)."""
    from scipy.stats import binom

    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    ordered = sorted(values)
    tail = (1 - confidence) / 2
    low_rank = int(binom.ppf(tail, n, q))  # values below the lower bound: at most this many
    high_rank = int(binom.ppf(1 - tail, n, q)) + 1
    low = float(ordered[low_rank - 1]) if low_rank >= 1 else math.nan
    high = float(ordered[high_rank - 1]) if high_rank <= n else math.nan
    return (low, high)


@dataclass(frozen=True)
class Outcome:
    """One request as the breach watch sees it: did the challenger fail, did it agree with
    the champion, and how long each took (ms)."""

    challenger_failed: bool
    agreed: bool | None
    champion_ms: float | None
    challenger_ms: float | None


class BreachWatch:
    """The challenger's last ``window`` outcomes and the thresholds they are held to."""

    def __init__(self, limits: CanaryConfig) -> None:
        self.limits = limits
        self.outcomes: deque[Outcome] = deque(maxlen=limits.window)

    def add(self, outcome: Outcome) -> list[str]:
        """Record ``outcome``; return why the challenger breaches now (empty: it does not)."""
        self.outcomes.append(outcome)
        return self.breaches()

    def breaches(self) -> list[str]:
        limits, seen = self.limits, list(self.outcomes)
        if len(seen) < limits.min_requests:
            return []
        compared = [o.agreed for o in seen if o.agreed is not None]
        reasons = [
            reason
            for reason in (
                _rate_over("error rate", sum(o.challenger_failed for o in seen), len(seen), limits.max_error_rate),
                _rate_over("disagreement", sum(not a for a in compared), len(compared), limits.max_disagreement),
            )
            if reason
        ]
        mine = [o.challenger_ms for o in seen if o.challenger_ms is not None]
        theirs = [o.champion_ms for o in seen if o.champion_ms is not None]
        p95 = quantile(mine, 0.95)
        if limits.max_p95_ms is not None and mine and p95 > limits.max_p95_ms:
            reasons.append(f"p95 latency {p95:.1f} ms on {len(mine)} requests > {limits.max_p95_ms:g} ms")
        if limits.max_p95_ratio is not None and mine and theirs:
            ratio = p95 / max(quantile(theirs, 0.95), 1e-9)
            if ratio > limits.max_p95_ratio:
                reasons.append(
                    f"p95 latency {p95:.1f} ms is {ratio:.1f}x the champion's {quantile(theirs, 0.95):.1f} ms "
                    f"> {limits.max_p95_ratio:g}x"
                )
        return reasons


def _rate_over(what: str, hits: int, total: int, bar: float) -> str | None:
    """Why a rate breaches ``bar``: its whole 95% Wilson interval lies above it; else None."""
    if not total:
        return None
    low, _ = wilson_interval(hits, total)
    if low <= bar:
        return None
    return f"{what} {hits / total:.3f} on {total} requests (95% interval from {low:.3f}) > {bar:g}"


@dataclass(frozen=True)
class Rate:
    """A proportion with its 95% Wilson interval."""

    hits: int
    total: int

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.total) if self.total else (math.nan, math.nan)

    def text(self) -> str:
        if not self.total:
            return "-"
        low, high = self.interval
        return f"{self.value:.3f} [{low:.3f}, {high:.3f}] on {self.total:,}"

    def as_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {"value": _num(self.value), "low": _num(low), "high": _num(high), "n": self.total}


@dataclass(frozen=True)
class Latency:
    """p50 and p95 of one model's request latencies, the p95 with its interval."""

    values: tuple[float, ...]

    def text(self) -> str:
        if not self.values:
            return "-"
        low, high = quantile_interval(self.values, 0.95)
        bounds = f"[{_ms(low)}, {_ms(high)}]"
        return f"p50 {quantile(self.values, 0.5):.1f} / p95 {quantile(self.values, 0.95):.1f} ms {bounds}"

    def as_dict(self) -> dict[str, Any]:
        low, high = quantile_interval(self.values, 0.95) if self.values else (math.nan, math.nan)
        return {
            "p50_ms": _num(quantile(self.values, 0.5)),
            "p95_ms": _num(quantile(self.values, 0.95)),
            "p95_low": _num(low),
            "p95_high": _num(high),
            "n": len(self.values),
        }


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


@dataclass(frozen=True)
class CanaryReport:
    """What live traffic says about a challenger beside its champion."""

    model: str
    champion: str
    challenger: str
    requests: int
    answered: Mapping[str, int]
    first_at: str | None
    last_at: str | None
    agreement: Rate
    errors: Mapping[str, Rate]
    latency: Mapping[str, Latency]
    accuracy: Mapping[str, Rate]
    labelled_both: int
    breaches: tuple[dict[str, Any], ...] = field(default=())

    def lines(self) -> list[str]:
        """The report as plain lines (``thaw canary``, ``thaw approve``, the approval form)."""
        head = f"{self.model}: champion v{self.champion} vs challenger v{self.challenger}"
        if not self.requests:
            return [head, "  no live requests recorded for this pair yet"]
        out = [
            head,
            f"  requests      {self.requests:,} from {self.first_at} to {self.last_at} "
            f"(answered by the champion {self.answered.get(CHAMPION, 0):,}, "
            f"by the challenger {self.answered.get(CHALLENGER, 0):,})",
            f"  agreement     {self.agreement.text()} requests both answered",
        ]
        for who in (CHAMPION, CHALLENGER):
            out.append(
                f"  {who:<13} latency {self.latency[who].text()}; errors {self.errors[who].text()}; "
                f"accuracy {self.accuracy[who].text()} labelled"
            )
        if not self.labelled_both:
            out.append("  labels        none arrived yet (`thaw feedback FILE` or POST /feedback)")
        for b in self.breaches:
            out.append(f"  BREACH        {b['at']}: {b['reason']}; all traffic returned to the champion")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Compact figures for the ledger (what the approver saw) and JSON output."""
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "requests": self.requests,
            "answered": dict(self.answered),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "agreement": self.agreement.as_dict(),
            "errors": {k: v.as_dict() for k, v in self.errors.items()},
            "latency": {k: v.as_dict() for k, v in self.latency.items()},
            "accuracy": {k: v.as_dict() for k, v in self.accuracy.items()},
            "breaches": [{"at": b["at"], "reason": b["reason"][:300]} for b in self.breaches[-3:]],
        }


def canary_report(
    model: str,
    champion: str,
    challenger: str,
    rows: Iterable[Mapping[str, Any]],
    labels: Mapping[str, str],
    breaches: Sequence[Mapping[str, Any]] = (),
) -> CanaryReport:
    """The report on ``rows`` (the store's requests of this pair), with the ``labels`` that
    arrived later by request id."""
    rows = list(rows)
    answered: dict[str, int] = {CHAMPION: 0, CHALLENGER: 0}
    both = [r for r in rows if r["champion_label"] is not None and r["challenger_label"] is not None]
    for r in rows:
        answered[r["answered_by"]] = answered.get(r["answered_by"], 0) + 1
    errors, latency, accuracy = {}, {}, {}
    for who in (CHAMPION, CHALLENGER):
        ran = [r for r in rows if r[f"{who}_label"] is not None or r[f"{who}_error"] is not None]
        errors[who] = Rate(sum(r[f"{who}_error"] is not None for r in ran), len(ran))
        latency[who] = Latency(tuple(r[f"{who}_ms"] for r in ran if r[f"{who}_ms"] is not None))
        judged = [r for r in ran if r["id"] in labels and r[f"{who}_label"] is not None]
        accuracy[who] = Rate(sum(r[f"{who}_label"] == labels[r["id"]] for r in judged), len(judged))
    stamps = sorted(str(r["at"]) for r in rows)
    return CanaryReport(
        model=model,
        champion=champion,
        challenger=challenger,
        requests=len(rows),
        answered=answered,
        first_at=stamps[0][:19] if stamps else None,
        last_at=stamps[-1][:19] if stamps else None,
        agreement=Rate(sum(r["champion_label"] == r["challenger_label"] for r in both), len(both)),
        errors=errors,
        latency=latency,
        accuracy=accuracy,
        labelled_both=sum(r["id"] in labels for r in both),
        breaches=tuple({"at": str(b["at"])[:19], "reason": str(b["reason"])} for b in breaches),
    )
