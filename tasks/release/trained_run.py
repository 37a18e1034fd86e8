"""What a pipeline run produced up to registration, handed to the release tasks as one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.curation.curate import CuratedDataset
from tasks.evaluation.scoring import TestEvaluation
from tasks.tracking.runs import TrackingRun
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import LadderResult


@dataclass(frozen=True)
class TrainedRun:
    """One run's results, in the order the pipeline made them: the tracking run and the
    config it ran with, the raw inputs as versioned, the curation, the curated splits as
    versioned, the ladder and the selected model's test evaluation."""

    run: TrackingRun
    cfg: ThawConfig
    raw: DatasetVersion
    curated: CuratedDataset
    versioned: DatasetVersion
    ladder: LadderResult
    tested: TestEvaluation
    unselected: dict[str, dict] = field(default_factory=dict)  # other rungs' test metrics, never used to select
    onnx: dict | None = None  # the ONNX artifact's onnx.json (thaw.onnx_export), None when none was built

    @property
    def reports(self) -> list[Path]:
        """Every report file the run wrote, as logged on the MLflow run."""
        return [*self.curated.reports, *self.tested.reports, *self.ladder.reports]
