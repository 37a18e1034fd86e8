"""The gate's I/O around ``thaw.gate``: rungs compared on the same rows, the decision
after each rung and the final selection. The transfer note is ``tasks.ladder.transfer_note``."""

from __future__ import annotations

from prefect import task

from tasks.ladder.cross_validation import POOL
from thaw.config import ThawConfig
from thaw.gate import (
    Comparison,
    Decision,
    RungScore,
    cross_validated_comparison,
    escalation_decision,
    negative_transfer,
    paired_comparison,
    select_rung,
)
from thaw.rungs import LadderContext, Selection, TrainedRung


def _score(rung: TrainedRung, cfg: ThawConfig) -> RungScore:
    return RungScore(rung.rung, rung.validation[cfg.training.ladder.metric], rung.validation_predictions)


def shared_folds(rungs: list[TrainedRung], ctx: LadderContext) -> list[str]:
    """The cross-validation folds every one of ``rungs`` was scored on, in the first
    rung's order ([] after a hold-out split, or when they share fewer than two)."""
    if not ctx.evaluation.cross_validated or not rungs:
        return []
    common = [name for name in rungs[0].fold_scores if all(name in r.fold_scores for r in rungs[1:])]
    return common if len(common) >= 2 else []


def ranking_metric(rungs: list[TrainedRung], ctx: LadderContext) -> dict[str, float]:
    """Each rung's metric to rank ``rungs`` by. Under cross-validation, its mean over the
    folds all of them ran: a rung whose budget allowed fewer repeats has its headline mean
    over fewer folds than the others', and on SpamAssassin at 10 per class (draw 14)
    frozen's ten folds averaged 0.8717 and few-shot's five 0.8267, while on those five
    few-shot was ahead (+0.0300). Else (a hold-out split) its validation metric."""
    common = shared_folds(rungs, ctx)
    if common:
        return {r.rung: sum(r.fold_scores[n] for n in common) / len(common) for r in rungs}
    return {r.rung: r.validation[ctx.cfg.training.ladder.metric] for r in rungs}


def _best(rungs: list[TrainedRung], ctx: LadderContext) -> TrainedRung:
    """The rung with the highest ``ranking_metric`` (the simplest on a tie)."""
    ranked = ranking_metric(rungs, ctx)
    return max(rungs, key=lambda r: ranked[r.rung])


def compare_rungs(a: TrainedRung, b: TrainedRung, ctx: LadderContext) -> Comparison:
    """b against a on the same rows: fold by fold (corrected t-test) when both were
    cross-validated, else a paired bootstrap over the validation split."""
    curated, cfg, evaluation = ctx.curated, ctx.cfg, ctx.evaluation
    ladder = cfg.training.ladder
    common = shared_folds([a, b], ctx)
    if common:
        train_fraction = 1 - 1 / evaluation.folds
        confidence = cfg.training.confidence_level
        scored = [name for name in common if name in a.fold_losses and name in b.fold_losses]
        # log-loss as b's gain: a's loss minus b's, on the folds both gave probabilities for
        log_loss = (
            cross_validated_comparison(
                a.rung,
                b.rung,
                [-a.fold_losses[n] for n in scored],
                [-b.fold_losses[n] for n in scored],
                train_fraction,
                confidence,
            )
            if len(scored) >= 2
            else None
        )
        return cross_validated_comparison(
            a.rung,
            b.rung,
            [a.fold_scores[n] for n in common],
            [b.fold_scores[n] for n in common],
            train_fraction,
            confidence,
            log_loss,
        )
    rows = POOL.read(curated, cfg.root) if evaluation.cross_validated else curated.read(cfg.root, "validation")
    return paired_comparison(
        rows.labels,
        _score(a, cfg),
        _score(b, cfg),
        ladder.metric,
        ladder.bootstrap_samples,
        cfg.training.confidence_level,
        cfg.training.seed,
    )


@task(name="decide-escalation")
def decide_escalation(trained: list[TrainedRung], ctx: LadderContext, rungs_left: int, elapsed_s: float) -> Decision:
    """The gate after the latest rung: compare it with the best simpler rung, then decide."""
    ladder = ctx.cfg.training.ladder
    metric = ladder.metric
    latest, simpler = trained[-1], trained[:-1]
    comparison = None
    best = _best(trained, ctx)
    if simpler:
        best_simpler = _best(simpler, ctx)
        comparison = compare_rungs(best_simpler, latest, ctx)
        best = latest if comparison.b_better(ladder.alpha) else best_simpler
    rungs_left = min(rungs_left, ladder.max_rungs - len(trained))
    return escalation_decision(
        latest.rung,
        best.rung,
        best.validation[metric],
        comparison,
        ladder.target,
        ladder.alpha,
        rungs_left,
        ladder.time_budget_minutes * 60 - elapsed_s,
    )


@task(name="select-rung")
def select_final_rung(
    trained: list[TrainedRung], scratch: TrainedRung, ctx: LadderContext, over_budget: dict[str, str] | None = None
) -> Selection:
    """The simplest rung the evidence cannot tell from the best (``ladder.selection``),
    among the rungs within the latency budget (``over_budget``: rung -> why it is left
    out; when every rung is over it, all stay candidates and the reason says so);
    negative transfer flagged."""
    cfg, over_budget = ctx.cfg, over_budget or {}
    alpha = cfg.training.ladder.alpha
    candidates = [r for r in trained if r.rung not in over_budget] or trained
    ranked = ranking_metric(candidates, ctx)
    best = max(candidates, key=lambda r: ranked[r.rung])
    comparisons = {r.rung: compare_rungs(r, best, ctx) for r in candidates if r.rung != best.rung}
    rule = cfg.training.ladder.selection
    scores = [RungScore(r.rung, ranked[r.rung], r.validation_predictions) for r in candidates]
    rung, reason = select_rung(scores, comparisons, alpha, rule)
    common = shared_folds(candidates, ctx)
    if common and any(len(r.fold_scores) > len(common) for r in candidates):
        reason += f" (rungs ranked on the {len(common)} folds all of them ran)"
    if over_budget:
        left_out = "; ".join(f"{name}: {why}" for name, why in over_budget.items())
        within = len(candidates) < len(trained)
        reason += (
            f" (left out for latency: {left_out})" if within else f"; no rung meets the latency budget ({left_out})"
        )
    frozen = trained[0]
    vs_scratch = compare_rungs(frozen, scratch, ctx)
    negative = negative_transfer(_score(scratch, cfg), _score(frozen, cfg), vs_scratch, alpha)
    chosen = next(r for r in trained if r.rung == rung)
    ahead = vs_scratch if chosen is frozen else _scratch_ahead(chosen, scratch, ctx)
    ahead = ahead if ahead is not None and ahead.delta > 0 else None
    return Selection(rung, reason, comparisons, vs_scratch, negative, dict(over_budget), ahead)


def _scratch_ahead(chosen: TrainedRung, scratch: TrainedRung, ctx: LadderContext) -> Comparison | None:
    """Scratch against the selected rung, on the rows or folds both were scored on. On the
    validation split that delta is the headline figures' difference, so the bootstrap is
    spared when scratch is behind; folds are compared whatever the headlines (a rung with
    fewer folds has its mean over other folds than scratch's)."""
    metric = ctx.cfg.training.ladder.metric
    if not ctx.evaluation.cross_validated and scratch.validation[metric] <= chosen.validation[metric]:
        return None
    return compare_rungs(chosen, scratch, ctx)
