"""The adaptation ladder: frozen first, escalate only on evidence.

Steps:
 1. assess the data: label counts, domain gap (tokenizer fragmentation, neighbour accuracy
    of frozen features), and how rungs will be scored: the validation split, or repeated
    stratified k-fold over train + validation when validation is too small to tell;
 2. scratch baseline (TF-IDF + a linear SVM), the yardstick for negative transfer;
 3. frozen rung (cached features + a head);
 4. the decision table picks the rungs worth climbing (few labels: contrastive few-shot
    rung; far domain or many labels: partial and full; otherwise PEFT first);
 5. after each rung the gate compares it with the best simpler rung on the same rows
    and either stops or trains the next planned rung, in its share of
    ``ladder.time_budget_minutes`` (``thaw.time_budget``);
 6. each rung's serving cost is measured on the held-out texts (latency at batch 1 and
    at a batch, throughput, memory, size); among the rungs within the latency budget the
    simplest within one standard error of the best (``ladder.selection``) is selected,
    and refit on train + validation when the plan says so: that model is measured,
    tested and registered;
 7. the transfer note (evidence, decisions, worst classes and slices, backbone
    movement), ladder chart and learning curves are written.
"""

import dataclasses
import time
from pathlib import Path

from prefect import flow

from tasks.ladder.assessment import assess_data, plan_ladder
from tasks.ladder.escalation import decide_escalation, select_final_rung
from tasks.ladder.features import FeatureSet
from tasks.ladder.frozen_rung import train_frozen_rung
from tasks.ladder.latency import measure_registered, measure_rungs, over_budget
from tasks.ladder.rung_training import needs_refit, refit_selected_rung, train_ladder_rung
from tasks.ladder.scratch_baseline import train_scratch_baseline
from tasks.ladder.transfer_note import write_transfer_note
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import LadderContext, LadderResult
from thaw.time_budget import refit_weight, rung_share


@flow(name="adaptation-ladder")
def climb_ladder(
    features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, run_dir: Path
) -> LadderResult:
    """Train rungs in the planned order while the gate says escalate; select, refit, explain."""
    started, budget = time.monotonic(), cfg.training.ladder.time_budget_minutes * 60
    evidence, evaluation = assess_data(features, curated, labels, cfg)
    ctx = LadderContext(curated, labels, cfg, run_dir, evaluation)
    scratch = train_scratch_baseline(ctx)
    trained = [train_frozen_rung(features, ctx)]
    evidence, plan = plan_ladder(evidence, scratch, trained[0], ctx)
    # a hold-out fit's refit on train + validation comes out of the same budget
    refit = 0.0
    if needs_refit(cfg, evaluation) and not evaluation.cross_validated:
        refit = refit_weight(evidence.train_rows, len(trained[0].validation_predictions))
    decisions = []
    for i, rung in enumerate((*plan.rungs, None)):
        left = len(plan.rungs) - i
        decisions.append(decide_escalation(trained, ctx, left, time.monotonic() - started))
        if decisions[-1].action == "stop" or rung is None:
            break
        trainable = min(left, cfg.training.ladder.max_rungs - len(trained))  # as many as the gate may train
        share = rung_share(budget - (time.monotonic() - started), trainable, refit)
        trained.append(train_ladder_rung(rung, ctx, share, last=trainable == 1))
    latency = measure_rungs(trained, ctx)
    selection = select_final_rung(trained, scratch, ctx, over_budget(latency, cfg.serving.latency_budget_ms))
    final = refit_selected_rung(selection, trained, ctx, budget - (time.monotonic() - started), refit or 1.0)
    served = {name: p.to_dict() for name, p in latency.items()}
    chosen = next(r for r in trained if r.rung == selection.rung)
    registered = latency[chosen.rung] if final.model_dir == chosen.model_dir else measure_registered(final, ctx)
    served["registered"] = registered.to_dict()
    result = LadderResult(
        features.backbone,
        scratch,
        tuple(trained),
        tuple(decisions),
        selection,
        final,
        evidence,
        evaluation,
        plan,
        (),
        time.monotonic() - started,
        served,
    )
    return dataclasses.replace(result, reports=tuple(write_transfer_note(result, ctx)))
