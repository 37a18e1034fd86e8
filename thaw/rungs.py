"""What the adaptation ladder hands from task to task: trained rungs, the selection and
the ladder's result. Plain frozen records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thaw.gate import Comparison, Decision


@dataclass(frozen=True)
class TrainedRung:
    """A trained rung: its model directory, validation metrics and predictions."""

    rung: str
    model_dir: Path | None  # None for the scratch baseline, which is never registered
    validation: dict[str, float]
    validation_predictions: tuple[str, ...]
    trainable_parameters: int
    details: dict


@dataclass(frozen=True)
class Selection:
    """The rung the gate selected, why, and the comparisons behind it."""

    rung: str
    reason: str
    comparisons_to_best: dict[str, Comparison]
    scratch_comparison: Comparison
    negative_transfer: bool


@dataclass(frozen=True)
class LadderResult:
    """Every rung trained, the gate's decisions, the selection and its reports."""

    scratch: TrainedRung
    trained: list[TrainedRung]
    decisions: list[Decision]
    selection: Selection
    reports: list[Path]
    seconds: float

    @property
    def selected(self) -> TrainedRung:
        return next(r for r in self.trained if r.rung == self.selection.rung)
