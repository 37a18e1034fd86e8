"""The run summary: what a scheduler or a person reads after a run (``--summary-json``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from prefect import task

from tasks.release.trained_run import TrainedRun
from tasks.tracking.client import RegisteredVersion
from tasks.tracking.dataset_inputs import dataset_name
from tasks.tracking.runs import TrackingRun
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.rungs import LadderResult


def stage_counts(report_path: Path) -> dict:
    """Per-stage row counts and the PII summary from the curation report."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return {"stages": report["stages"], "splits": report["splits"], "pii": report["pii"]}


@task(name="write-run-summary")
def write_run_summary(trained: TrainedRun, registered: RegisteredVersion) -> Path:
    """Write ``summary.json`` in the run directory and return its path."""
    cfg, run, ladder, evaluation = trained.cfg, trained.run, trained.ladder, trained.tested
    curated, raw, versioned, others = trained.curated, trained.raw, trained.versioned, trained.unselected
    summary = {
        "model": {
            "name": registered.name,
            "version": registered.version,
            "alias": registered.alias,
            "uri": f"models:/{registered.name}@{registered.alias}",
        },
        "mlflow": {"run_id": run.run_id, "tracking_uri": run.tracking_uri},
        "curation": stage_counts(curated.report_path),
        "rungs": [
            {
                "rung": r.rung,
                "validation": r.validation,
                "trainable_parameters": r.trainable_parameters,
                "details": asdict(r.details),
                "selected": r.rung == ladder.selection.rung,
                "test": evaluation.metrics if r.rung == ladder.selection.rung else others.get(r.rung),
                "serving": ladder.latency.get(r.rung),
            }
            for r in [ladder.scratch, *ladder.trained]
        ],
        "gate": {
            "metric": cfg.training.ladder.metric,
            "target": cfg.training.ladder.target,
            "alpha": cfg.training.ladder.alpha,
            "decisions": [
                {"after": d.after, "action": d.action, "reason": d.reason, "best": d.best} for d in ladder.decisions
            ],
            "selection_reason": ladder.selection.reason,
            "negative_transfer": ladder.selection.negative_transfer,
            "scratch_ahead": asdict(ladder.selection.scratch_ahead) if ladder.selection.scratch_ahead else None,
            "ladder_seconds": round(ladder.seconds, 1),
            "latency_budget_ms": cfg.serving.latency_budget_ms,
            "over_budget": dict(ladder.selection.over_budget),
            "scored_by": asdict(ladder.evaluation),
            "evidence": asdict(ladder.evidence),
            "decision_table": asdict(ladder.plan),
        },
        "registered_model": {
            "rung": ladder.final.rung,
            "trained_on": list(ladder.final.details.trained_on),
            # a model of its own (after cross-validation the selected rung's folds kept none)
            "refit": ladder.final.model_dir
            != next(r for r in ladder.trained if r.rung == ladder.selection.rung).model_dir,
            "details": asdict(ladder.final.details),  # the refit's own when there was one
            "serving": ladder.latency.get("registered"),
            "served": ladder.latency.get("served"),  # as registered: through its ONNX artifact when kept
            "onnx": trained.onnx,
        },
        "caches": {
            "curation_hit": curated.cache_hit,
            "frozen_features_hit": ladder.trained[0].details.cache_hits,
            "rungs_resumed_from_checkpoint": {
                r.rung: r.details.resumed_from_epoch for r in ladder.trained if r.details.resumed_from_epoch is not None
            },
        },
        "selected_rung": ladder.selection.rung,
        "test": {
            "rung": ladder.selection.rung,
            "metrics": evaluation.metrics,
            "used_for_selection": False,
            "note": "the test split is scored once, by the selected model; other rungs' test numbers are informational",
        },
        "lineage": {
            "raw": {"dvc_file": raw.dvc_file, "md5": raw.md5, "files": {k: asdict(v) for k, v in raw.files.items()}},
            "curated": {k: asdict(v) for k, v in versioned.files.items()},
            "dvc_remote": versioned.remote,
            "config_digest": cfg.digest(),
        },
    }
    path = run.run_dir / artifacts.SUMMARY
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def ladder_metrics(trained: TrainedRun) -> dict[str, float]:
    """Validation metrics of every rung, test metrics of the selected one (and others, marked)."""
    ladder, evaluation, others = trained.ladder, trained.tested, trained.unselected
    out = {}
    for r in [ladder.scratch, *ladder.trained]:
        out.update({f"{r.rung}.validation_{k}": v for k, v in r.validation.items()})
    out.update({f"test_{k}": v for k, v in evaluation.metrics.items()})
    for rung, metrics in others.items():
        out.update({f"{rung}.test_unselected_{k}": v for k, v in metrics.items() if isinstance(v, float)})
    return out


def record_approval(summary_path: Path, outcome: str, message: str) -> None:
    """Add how the wait for approval ended to the run summary (the terminal reads it)."""
    from thaw.datasets import write_text_atomically

    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["approval"] = {"outcome": outcome, "message": message}
    write_text_atomically(summary_path, json.dumps(summary, indent=2, sort_keys=True, default=str))


def ladder_curves(ladder: LadderResult) -> list[tuple[str, float, int]]:
    """Per-epoch training loss and validation metric of each trained rung, as (key, value,
    epoch counted from 1): logged as steps, MLflow draws them as learning curves."""
    points = []
    for r in ladder.trained:
        for h in r.details.history:
            points.append((f"{r.rung}.epoch_train_loss", h.train_loss, h.epoch))
            if h.validation_metric is not None:
                points.append((f"{r.rung}.epoch_validation_metric", h.validation_metric, h.epoch))
    return points


def metric_datasets(trained: TrainedRun, metrics: dict[str, float]) -> dict[str, tuple[str, str]]:
    """The dataset (name, digest) each metric was measured on, as logged by ``log_datasets``:
    test metrics on the curated test split; validation metrics on the validation split
    when rungs were scored on it (cross-validation scores span train and validation)."""

    cfg, ladder, versioned = trained.cfg, trained.ladder, trained.versioned

    def on(split: str) -> tuple[str, str]:
        return dataset_name(cfg, "curated", split, versioned), versioned.files[split].md5

    tied = {}
    for key in metrics:
        if (key.startswith("test_") or ".test_unselected_" in key) and "test" in versioned.files:
            tied[key] = on("test")
        elif ".validation_" in key and ladder.evaluation.mode == "holdout" and "validation" in versioned.files:
            tied[key] = on("validation")
    return tied


def reports_in(run_dir: Path) -> list[Path]:
    """Reports a failed run still leaves for the reader (curation, expectations, docs)."""
    return [run_dir / n for n in artifacts.EARLY_REPORTS if (run_dir / n).exists()]


def write_skipped_summary(cfg: ThawConfig, run: TrackingRun, reason: str) -> Path:
    """The summary of a run that curated and versioned its data but did not train."""
    path = run.run_dir / artifacts.SUMMARY
    path.write_text(
        json.dumps({"skipped": reason, "model": None, "mlflow": {"run_id": run.run_id}}, indent=2), encoding="utf-8"
    )
    return path
