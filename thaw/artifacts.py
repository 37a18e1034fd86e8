"""Every file a pipeline run writes in its directory (``<state>/runs/<run id>/``), named once.

Stages write them, the flow logs them on the MLflow run, lineage lists them for the
auditor and a failed run logs those it got to: all read the names here.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"  # the validated configuration the run used
CURATED_DIR = "curated"  # the curated splits
CURATION_REPORT = "curation_report.json"  # rows in and out by stage and reason, PII by type
CURATION_REPORT_MD = "curation_report.md"
CURATION_METRICS = "curation_metrics.json"
EXPECTATIONS = "expectations.json"  # every expectation with its arguments and result
DATA_CHECKS = "data_checks.md"
DATA_DOCS = "data_docs"  # Great Expectations' Data Docs
TRANSFER_NOTE = "transfer_note.json"  # what the ladder did and why
TRANSFER_NOTE_MD = "transfer_note.md"
LADDER_CHART = "ladder_chart.png"
LEARNING_CURVES = "learning_curves.png"
TEST_REPORT = "test_report.json"  # the selected model on the test split, per class
CONFUSION_MATRIX = "confusion_matrix.png"
SUMMARY = "summary.json"  # what a scheduler or a person reads after the run
MODELS_DIR = "models"  # one model directory per trained rung, and the final refit
FINAL_MODEL = "final"

# What a run that failed or was cancelled still logs, when it got that far.
EARLY_REPORTS = (CURATION_REPORT, CURATION_REPORT_MD, EXPECTATIONS, DATA_CHECKS, DATA_DOCS)
# The reports ``thaw lineage`` lists for an auditor (the model cards too).
AUDIT_REPORTS = (
    CURATION_REPORT,
    CURATION_METRICS,
    EXPECTATIONS,
    TRANSFER_NOTE_MD,
    TRANSFER_NOTE,
    TEST_REPORT,
    CONFUSION_MATRIX,
    LADDER_CHART,
    DATA_DOCS,
)
MODEL_CARD_PREFIX = "model_card_"


def model_card(version: str) -> str:
    """The model card of registered version ``version``."""
    return f"{MODEL_CARD_PREFIX}v{version}.md"


def rung_model_dir(run_dir: Path, rung: str) -> Path:
    """Where rung ``rung`` of a run writes its model."""
    return run_dir / MODELS_DIR / rung


def final_model_dir(run_dir: Path) -> Path:
    """Where the selected configuration refit on train + validation is written."""
    return run_dir / MODELS_DIR / FINAL_MODEL
