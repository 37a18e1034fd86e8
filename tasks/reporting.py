"""The run summary: what a scheduler or a person reads after a run (``--summary-json``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from prefect import task

from tasks.curation import CuratedDataset
from tasks.evaluation import Evaluation
from tasks.registry import RegisteredVersion, TrackingRun
from tasks.training import TrainedRung
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig


def stage_counts(report_path: Path) -> dict:
    """Per-stage row counts and the PII summary from the curation report."""
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return {"stages": report["stages"], "splits": report["splits"], "pii": report["pii"]}


@task(name="write-run-summary")
def write_run_summary(
    cfg: ThawConfig, run: TrackingRun, curated: CuratedDataset, raw: DatasetVersion, versioned: DatasetVersion,
    rungs: list[TrainedRung], selected: TrainedRung, evaluation: Evaluation, registered: RegisteredVersion,
) -> Path:
    """Write ``summary.json`` in the run directory and return its path."""
    summary = {
        "model": {"name": registered.name, "version": registered.version, "alias": registered.alias, "uri": f"models:/{registered.name}@{registered.alias}"},
        "mlflow": {"run_id": run.run_id, "tracking_uri": run.tracking_uri},
        "curation": stage_counts(curated.report_path),
        "rungs": [
            {"rung": r.rung, "validation": r.validation, "trainable_parameters": r.trainable_parameters,
             "details": r.details, "selected": r.rung == selected.rung}
            for r in rungs
        ],
        "selected_rung": selected.rung,
        "test": {"rung": selected.rung, "metrics": evaluation.metrics},
        "lineage": {
            "raw": {"dvc_file": raw.dvc_file, "md5": raw.md5, "files": {k: asdict(v) for k, v in raw.files.items()}},
            "curated": {k: asdict(v) for k, v in versioned.files.items()},
            "dvc_remote": versioned.remote,
            "config_digest": cfg.digest(),
        },
    }
    path = run.run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def evaluation_metrics(selected, evaluation) -> dict[str, float]:
    """Validation metrics of the selected rung and test metrics, prefixed."""
    out = {f"validation_{k}": v for k, v in selected.validation.items()}
    out.update({f"test_{k}": v for k, v in evaluation.metrics.items()})
    return out


def reports_in(run_dir: Path) -> list[Path]:
    """Reports a failed run still leaves for the reader (curation, expectations, docs)."""
    names = ("curation_report.json", "expectations.json", "data_docs")
    return [run_dir / n for n in names if (run_dir / n).exists()]
