"""What the adaptation ladder hands from task to task: trained rungs and how they were
trained, the selection and the ladder's result. Plain frozen records, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.gate import Comparison, Decision
from thaw.modeling import BackboneRef
from thaw.movement import BackboneMovement


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of fine-tuning (counted from 1): mean training loss and the gate's metric
    on validation (None when the fit had no validation rows)."""

    epoch: int
    train_loss: float
    validation_metric: float | None


@dataclass(frozen=True)
class RungDetails:
    """How a rung was trained: what trained, what stayed frozen, its settings and history."""

    method: str  # in words, e.g. "lora", "logistic regression on the frozen backbone"
    frozen: str  # what did not change, in words
    trainable_fraction_of_backbone: float
    settings: dict[str, float | str] = field(default_factory=dict)  # chosen C, learning rate, ...
    selection_scores: dict[str, float] = field(default_factory=dict)  # validation score of each candidate head
    # cross-validation: each candidate's mean fold log-loss, which breaks ties of the score
    selection_losses: dict[str, float] = field(default_factory=dict)
    history: tuple[EpochRecord, ...] = ()
    epochs_run: int | None = None
    epochs_within_budget: int | None = None  # planned, when the time budget cut the configured count (thaw.time_budget)
    best_epoch: int | None = None
    resumed_from_epoch: int | None = None
    train_seconds: float | None = None
    step_seconds: float | None = None  # of train_seconds, in optimiser steps (adapted rungs)
    training_gflop: float | None = None  # the matmul work of those steps (thaw.adaptation.training_flops_per_token)
    cache_hits: dict[str, bool] = field(default_factory=dict)
    processes: int = 1
    movement: BackboneMovement | None = None  # how far the backbone moved (adapted rungs)
    trained_on: tuple[str, ...] = ("train",)  # splits the registered weights learned from
    refit_skipped: str | None = None  # why the hold-out model was registered without its refit
    folds: int = 0  # cross-validation folds scored (0: scored on the validation split)
    fits_at_once: int = 1  # cross-validation: folds fitted side by side (tasks.ladder.fold_pool)
    wall_seconds: float | None = None  # cross-validation: the folds' wall time (train_seconds sums the fits)
    # cross-validation: the refit trained beside the folds (its train_seconds, step_seconds, training_gflop)
    refit_ahead: dict[str, float] | None = None
    refit_ran_ahead: bool = False  # a refit: trained beside its rung's folds, resumed whole when selected

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RungDetails:
        """The inverse of ``dataclasses.asdict`` (e.g. across a process boundary)."""
        movement = data.get("movement")
        return cls(
            **{
                **data,
                "history": tuple(EpochRecord(**h) for h in data.get("history", ())),
                "movement": BackboneMovement(**{**movement, "blocks": tuple(movement["blocks"])}) if movement else None,
                "trained_on": tuple(data.get("trained_on", ("train",))),
            }
        )


@dataclass(frozen=True)
class TrainedRung:
    """A trained rung: its model directory, validation metrics and predictions."""

    rung: str
    model_dir: Path | None  # None for the scratch baseline, which is never registered
    validation: dict[str, float]  # on the validation split, or out-of-fold over train + validation
    validation_predictions: tuple[str, ...]
    trainable_parameters: int
    details: RungDetails
    fold_scores: dict[str, float] = field(default_factory=dict)  # cross-validation: the metric per fold
    # cross-validation: mean log-loss per fold, for rungs that give probabilities (not scratch)
    fold_losses: dict[str, float] = field(default_factory=dict)
    # a cross-validation fold's held-out rows' log-probabilities (rows in the order of
    # validation_predictions, a column per class in the labels' order); None otherwise
    validation_log_probabilities: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        log_probabilities = self.validation_log_probabilities
        return asdict(self) | {
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "validation_log_probabilities": None if log_probabilities is None else log_probabilities.tolist(),
        }

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
            data.get("fold_scores", {}),
            data.get("fold_losses", {}),
            _array_or_none(data.get("validation_log_probabilities")),
        )


def _array_or_none(values) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=float)


@dataclass(frozen=True)
class Selection:
    """The rung the gate selected, why, and the comparisons behind it."""

    rung: str
    reason: str
    comparisons_to_best: dict[str, Comparison]
    scratch_comparison: Comparison
    negative_transfer: bool
    over_budget: dict[str, str] = field(default_factory=dict)  # rung -> why the latency budget left it out
    # the scratch baseline (b) against the selected rung (a) when it scored higher: thaw
    # registers models of the backbone only, so the baseline is a yardstick, not a candidate
    scratch_ahead: Comparison | None = None


@dataclass(frozen=True)
class EvaluationPlan:
    """How rungs are scored: on the validation split ("holdout"), or by repeated stratified
    k-fold cross-validation over train + validation ("cross-validation") when validation
    is too small for the gate to see a real gain."""

    mode: str  # "holdout" | "cross-validation"
    folds: int
    repeats: int
    seed: int
    validation_rows_per_class: float  # median over classes
    needed_per_class: int
    reason: str

    @property
    def cross_validated(self) -> bool:
        return self.mode == "cross-validation"

    @classmethod
    def holdout(cls, reason: str = "validation split as given") -> EvaluationPlan:
        return cls("holdout", 0, 0, 0, 0.0, 0, reason)

    def fold_rows(self, labels: list[str]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        """(name, training positions, held-out positions) of every fold over the pooled
        rows with these labels: stratified (each class dealt round-robin over the folds
        after a seeded shuffle), a new shuffle per repeat."""
        import random

        by_class: dict[str, list[int]] = {}
        for position, label in enumerate(labels):
            by_class.setdefault(label, []).append(position)
        out = []
        for repeat in range(self.repeats):
            rng = random.Random(self.seed * 7919 + repeat)
            fold_of: dict[int, int] = {}
            offset = 0
            for label in sorted(by_class):
                rows = by_class[label][:]
                rng.shuffle(rows)
                for i, position in enumerate(rows):
                    fold_of[position] = (offset + i) % self.folds
                offset += len(rows)  # the next class starts where this one stopped: folds stay even
            for fold in range(self.folds):
                held = tuple(p for p in range(len(labels)) if fold_of[p] == fold)
                kept = tuple(p for p in range(len(labels)) if fold_of[p] != fold)
                out.append((f"cv-r{repeat}-f{fold}", kept, held))
        return out


@dataclass(frozen=True)
class DataEvidence:
    """What the data says before climbing (seed document 002): label counts, how far the
    domain is from the backbone's, and whether reuse already works."""

    classes: int
    train_rows: int
    rows_per_class_min: int
    rows_per_class_median: float
    fragmented_word_share: float  # words the tokenizer cuts into 3+ pieces or [UNK]
    neighbour_accuracy: float  # leave-one-out 1-NN accuracy of frozen features on train
    frozen_minus_scratch: float | None = None  # validation metric gap, once both are trained
    frozen_vs_scratch_p: float | None = None
    frozen_metric: float | None = None


@dataclass(frozen=True)
class LadderPlan:
    """The rungs to climb after the frozen one, the first move the decision table
    suggests, and why."""

    suggestion: str
    rungs: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class LadderResult:
    """Every rung trained, the gate's decisions, the selection, the model to register
    (the selected rung, or its refit on train + validation) and the reports."""

    backbone: BackboneRef
    scratch: TrainedRung
    trained: tuple[TrainedRung, ...]
    decisions: tuple[Decision, ...]
    selection: Selection
    final: TrainedRung
    evidence: DataEvidence
    evaluation: EvaluationPlan
    plan: LadderPlan
    reports: tuple[Path, ...]
    seconds: float
    # serving cost per rung (thaw.latency.LatencyProfile as a dict), "registered" for the final model
    latency: dict[str, dict] = field(default_factory=dict)

    @property
    def selected(self) -> TrainedRung:
        """The model that is tested and registered."""
        return self.final


@dataclass(frozen=True)
class LadderContext:
    """What every task of one climb shares: the curated splits, the label set, the
    config, the run directory the rungs write to, and how rungs are scored."""

    curated: DatasetVersion
    labels: tuple[str, ...]
    cfg: ThawConfig
    run_dir: Path
    evaluation: EvaluationPlan
