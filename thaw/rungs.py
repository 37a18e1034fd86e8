"""What the adaptation ladder hands from task to task: trained rungs and how they were
trained, the selection and the ladder's result. Plain frozen records, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thaw.gate import Comparison, Decision
from thaw.modeling import BackboneRef


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of fine-tuning: mean training loss and the gate's metric on validation."""

    epoch: int
    train_loss: float
    validation_metric: float


@dataclass(frozen=True)
class RungDetails:
    """How a rung was trained: what trained, what stayed frozen, its settings and history."""

    method: str  # in words, e.g. "lora", "logistic regression on the frozen backbone"
    frozen: str  # what did not change, in words
    trainable_fraction_of_backbone: float
    settings: dict[str, float | str] = field(default_factory=dict)  # chosen C, learning rate, ...
    selection_scores: dict[str, float] = field(default_factory=dict)  # validation score of each candidate head
    history: tuple[EpochRecord, ...] = ()
    epochs_run: int | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int | None = None
    train_seconds: float | None = None
    cache_hits: dict[str, bool] = field(default_factory=dict)
    processes: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RungDetails:
        """The inverse of ``dataclasses.asdict`` (e.g. across a process boundary)."""
        return cls(**{**data, "history": tuple(EpochRecord(**h) for h in data.get("history", ()))})


@dataclass(frozen=True)
class TrainedRung:
    """A trained rung: its model directory, validation metrics and predictions."""

    rung: str
    model_dir: Path | None  # None for the scratch baseline, which is never registered
    validation: dict[str, float]
    validation_predictions: tuple[str, ...]
    trainable_parameters: int
    details: RungDetails

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"model_dir": str(self.model_dir) if self.model_dir else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedRung:
        """The inverse of ``to_dict``."""
        model_dir = Path(data["model_dir"]) if data["model_dir"] else None
        return cls(
            data["rung"],
            model_dir,
            data["validation"],
            tuple(data["validation_predictions"]),
            data["trainable_parameters"],
            RungDetails.from_dict(data["details"]),
        )


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

    backbone: BackboneRef
    scratch: TrainedRung
    trained: tuple[TrainedRung, ...]
    decisions: tuple[Decision, ...]
    selection: Selection
    reports: tuple[Path, ...]
    seconds: float

    @property
    def selected(self) -> TrainedRung:
        return next(r for r in self.trained if r.rung == self.selection.rung)
