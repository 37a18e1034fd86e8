"""The adaptation ladder: frozen first, escalate only on evidence.

Steps:
 1. scratch baseline (TF-IDF + logistic regression), the yardstick for negative transfer;
 2. frozen rung (cached features + logistic-regression head);
 3. after each rung the gate compares it with the best simpler rung (paired bootstrap on
    validation) and either stops or trains the next configured rung (peft, partial, full);
 4. the simplest rung not significantly worse than the best is selected;
 5. the transfer note, ladder chart and learning curves are written.
"""

import time
from pathlib import Path

from prefect import flow

from tasks.escalation import decide_escalation, select_final_rung, write_transfer_note
from tasks.features import FeatureSet
from tasks.finetuning import train_adapted_rung
from tasks.frozen_rung import train_frozen_rung
from tasks.scratch_baseline import train_scratch_baseline
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import LadderResult


@flow(name="adaptation-ladder")
def climb_ladder(
    features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, run_dir: Path
) -> LadderResult:
    """Train rungs in order while the gate says escalate; select and explain."""
    started = time.monotonic()
    scratch = train_scratch_baseline(curated, labels, cfg)
    trained = [train_frozen_rung(features, curated, labels, cfg, run_dir)]
    decisions = []
    for next_rung in cfg.training.ladder.rungs[1:] + (None,):
        decisions.append(decide_escalation(trained, curated, cfg, time.monotonic() - started))
        if decisions[-1].action == "stop" or next_rung is None:
            break
        trained.append(train_adapted_rung(next_rung, curated, labels, trained[0].model_dir, cfg, run_dir))
    selection = select_final_rung(trained, scratch, curated, cfg)
    reports = write_transfer_note(selection, trained, scratch, decisions, cfg, run_dir)
    seconds = time.monotonic() - started
    return LadderResult(
        features.backbone, scratch, tuple(trained), tuple(decisions), selection, tuple(reports), seconds
    )
