"""The drift monitor: newly arrived text against the data a model version learned from.

Steps:
 1. resolve the model version and restore its curated splits from the DVC remote (md5-checked);
 2. read the new rows, scrub PII (texts and ids) as curation does, drop exact repeats;
 3. test for drift on the version's frozen-backbone features, labels and accuracy (``thaw.drift``);
 4. write the report (JSON, markdown, PNG);
 5. on drift with labelled rows: write the combined training file and, given a deployment,
    start a training run on it (the new challenger then meets the usual gate and approval);
 6. publish the report as an MLflow run and a Prefect artifact; the scrubbed rows are
    removed when the run ends, whatever its end.
"""

from pathlib import Path

from prefect import flow

from tasks.monitoring.drift import (
    assess_arrivals,
    monitor_run_dir,
    publish_drift_report,
    read_arrivals,
    restore_reference,
    trigger_retraining,
)
from thaw.config import ThawConfig
from thaw.datasets import ColumnMap


@flow(name="thaw-monitor", log_prints=True)
def thaw_monitor(
    cfg: ThawConfig,
    model: str,
    arrivals_file: str,
    text_column: str,
    label_column: str | None = None,
    id_column: str | None = None,
    retrain_deployment: str | None = None,
) -> Path:
    """Assess ``arrivals_file`` against ``model``'s training data; return the report's path."""
    run_dir = monitor_run_dir(cfg)
    reference = restore_reference(cfg, model)
    columns = ColumnMap(text=text_column, label=label_column, id=id_column)
    arrivals = read_arrivals(cfg, Path(arrivals_file), columns, run_dir)
    try:
        outcome = assess_arrivals(cfg, reference, arrivals, run_dir)
        retraining = trigger_retraining(cfg, reference, arrivals, retrain_deployment) if outcome.drifted else None
        publish_drift_report(cfg, reference, arrivals, outcome, retraining)
    finally:
        arrivals.scrubbed.unlink(missing_ok=True)  # the rows themselves: kept no longer than the run
    return outcome.report_json
