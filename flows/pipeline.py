"""The thaw pipeline: labelled text in, a registered, traceable challenger out.

Steps:
 1. open the MLflow run (tagged with config digest, git commit, Prefect flow run id);
 2. version the raw inputs with DVC (``data.dvc``) and push them;
 3. curate: clean, exact/near dedup across splits, PII scrubbing, split;
 4. validate the curated splits with Great Expectations (halts before training);
 5. version the curated splits with DVC and push them; log them as MLflow inputs;
 6. take the model's training slot (one training per model at a time; wait or skip),
    then extract frozen-backbone features (cached by content);
 7. climb the adaptation ladder (``flows.adaptation_ladder``): scratch baseline, frozen rung, and
    deeper rungs only while the gate finds a significant gain;
 8. evaluate the selected model on the test split, once; export it to ONNX (int8 where it
    agrees with PyTorch and keeps its accuracy interval) and measure it as it will serve;
 9. register it in the MLflow registry as ``challenger`` with its lineage and model card;
10. write the run summary and close the run (FAILED on an error, KILLED when cancelled or
    interrupted, with its reports and the reason);
11. after a finished run, keep the state directory's caches, checkpoints and run directories within
    ``state_budget_gb`` (least recently used out first, none this run used);
12. optionally pause for a human approval form in the Prefect UI (``promotion.wait_for_approval``).
"""

import dataclasses
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.adaptation_ladder import climb_ladder
from tasks.curation.curate import curate_dataset
from tasks.curation.expectations import validate_curated_data
from tasks.evaluation.prediction import predict_test_split, report_unselected_rungs
from tasks.evaluation.scoring import evaluate_on_test
from tasks.ladder.features import extract_frozen_features
from tasks.ladder.training_slot import training_slot
from tasks.release.approval_form import final_state, wait_for_approval
from tasks.release.lineage import model_version_tags, run_params
from tasks.release.model_card import publish_model_card
from tasks.release.registration import register_model
from tasks.release.run_summary import (
    ladder_curves,
    ladder_metrics,
    metric_datasets,
    record_approval,
    reports_in,
    write_run_summary,
    write_skipped_summary,
)
from tasks.release.serving_artifact import onnx_artifact
from tasks.release.trained_run import TrainedRun
from tasks.tracking.dataset_inputs import log_datasets
from tasks.tracking.runs import close_tracking_run, log_run_results, open_tracking_run, tie_metrics_to_model
from tasks.versioning.snapshots import version_curated_data, version_raw_data
from tasks.versioning.state_budget import keep_state_within_budget
from thaw.config import ThawConfig
from thaw.errors import UserError, run_ending
from thaw.state_budget import state_in_use


@flow(name="thaw-pipeline", log_prints=True)
def thaw_pipeline(cfg: ThawConfig) -> Path:
    """Run every stage on ``cfg``; return the path of the run summary JSON."""
    started = time.time()
    with state_in_use(cfg.state_path):  # no other run prunes the caches under it
        run = open_tracking_run(cfg, str(flow_run.get_id() or "local"))
        try:
            raw = version_raw_data(cfg)
            curated = curate_dataset(cfg, run.run_dir)
            expectations = validate_curated_data(curated.files, cfg, run.run_dir)
            versioned = version_curated_data(curated.files, cfg, curated.metrics_path)
            log_datasets(run, cfg, raw, versioned)
            with training_slot(cfg) as acquired:
                if not acquired:
                    summary = write_skipped_summary(cfg, run, "another run of this model is training")
                    close_tracking_run(run, cfg, "KILLED", [summary], "skipped: another run of this model is training")
                    return summary
                features = extract_frozen_features(versioned, cfg)
                ladder = climb_ladder(features, versioned, curated.labels, cfg, run.run_dir)
                y_true, y_pred = predict_test_split(ladder.selected.model_dir, versioned, cfg)
                tested = evaluate_on_test(y_true, y_pred, curated.labels, cfg, run.run_dir)
                unselected = report_unselected_rungs(
                    ladder.trained, ladder.selection.rung, versioned, curated.labels, cfg
                )
                onnx, served = onnx_artifact(ladder.selected.model_dir, versioned, cfg, y_pred)
                if served is not None:
                    ladder = dataclasses.replace(ladder, latency={**ladder.latency, "served": served})
                trained = TrainedRun(run, cfg, raw, curated, versioned, ladder, tested, unselected, onnx)
                metrics = ladder_metrics(trained)
                measured_on = metric_datasets(trained, metrics)
                log_run_results(
                    run,
                    cfg,
                    run_params(cfg, ladder.selected),
                    metrics,
                    [*trained.reports, *expectations.reports],
                    datasets=measured_on,
                    curves=ladder_curves(ladder),
                )
                registered = register_model(run, cfg, ladder.selected.model_dir, model_version_tags(trained))
                tie_metrics_to_model(cfg, registered, metrics, measured_on)
                publish_model_card(trained, registered)
                summary = write_run_summary(trained, registered)
        except BaseException as exc:
            status, reason = run_ending(exc)
            close_tracking_run(run, cfg, status, reports_in(run.run_dir), reason)
            raise
        close_tracking_run(run, cfg, "FINISHED", [summary])
    keep_state_within_budget(cfg, started)
    if cfg.promotion.wait_for_approval:
        try:
            outcome = wait_for_approval(cfg, registered)
        except UserError as exc:  # refused by the gate: the summary says so, the run fails with why
            record_approval(summary, "refused", str(exc))
            raise
        record_approval(summary, outcome.outcome, outcome.message)
        return final_state(outcome, summary)
    return summary
