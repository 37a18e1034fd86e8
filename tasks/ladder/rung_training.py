"""Training a rung of the ladder the way its evaluation plan says, and the final refit.

- held-out validation: one fit on train, scored (and stopped early) on validation, its
  epochs planned to end within the rung's share of the time budget (``thaw.time_budget``);
- cross-validation: one fit per fold of train + validation, each scored on its held-out
  rows after a fixed number of epochs (choosing the epoch on the rows a fold is scored on
  would flatter it); a repeat's folds side by side in worker processes on a CPU
  (``tasks.ladder.fold_pool``); repeats after the first only while they fit in the rung's
  share of the time budget and in ``ladder.cv_repeat_minutes``;
- refit: the selected configuration trained again on train + validation (always after
  cross-validation, whose fold models are not kept; after hold-out when configured),
  and this is the model that is tested and registered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prefect import task

from tasks.ladder.cross_validation import (
    POOL,
    Fold,
    FoldOutput,
    cross_validate,
    cross_validated_metrics,
    gate_metric,
)
from tasks.ladder.finetuning import AdaptedFit, fit_adapted_rung, holdout_fit, train_adapted_rung
from tasks.ladder.fold_pool import FoldPool, fold_workers
from tasks.ladder.frozen_rung import frozen_model_dir, linear_probe_path
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, SplitRows
from thaw.rung_registry import rung_method
from thaw.rungs import EvaluationPlan, LadderContext, RungDetails, Selection, TrainedRung


@task(name="train-ladder-rung")
def train_ladder_rung(rung: str, ctx: LadderContext, budget_s: float, last: bool = False) -> TrainedRung:
    """Fit the adapted ``rung`` (any registered rung but the frozen one) and score it as
    the evaluation plan says: a hold-out fit plans its epochs to end within ``budget_s``
    seconds, cross-validation its repeats after the first.

    When the rung is the ``last`` the ladder may train and its folds leave a worker of
    the pool idle (5 folds on 2 workers), its refit on train + validation runs ahead in
    that worker, started first (it is the longest fit): should the rung be selected,
    ``refit_selected_rung`` resumes that fit from its finished checkpoints instead of
    training it after the gate. Should it not, that worker's time is what was lost."""
    curated, labels, cfg, run_dir, evaluation = ctx.curated, ctx.labels, ctx.cfg, ctx.run_dir, ctx.evaluation
    frozen_dir = frozen_model_dir(run_dir)
    if not evaluation.cross_validated:
        fit = holdout_fit(rung, run_dir, deadline=time.time() + budget_s)
        return train_adapted_rung.fn(fit, curated, labels, cfg)
    rows = POOL.read(curated, cfg.root)
    fits: list[TrainedRung] = []
    workers = fold_workers(cfg, evaluation.folds, rung)

    def fold_fit(name: str, kept: tuple[int, ...], held: tuple[int, ...]) -> AdaptedFit:
        return AdaptedFit(
            rung,
            SplitRows(POOL.splits, kept),
            SplitRows(POOL.splits, held),
            frozen_dir / "folds" / f"{name}.safetensors",
            name,
            None,
            select_epoch=False,
            measure_movement=name == "cv-r0-f0",
        )

    def fit_predict_folds(folds: Sequence[Fold]) -> list[FoldOutput]:
        repeat = [fold_fit(*fold) for fold in folds]
        if pool is None:
            trained = [fit_adapted_rung(fit, curated, labels, cfg) for fit in repeat]
        else:
            trained = pool.fit(repeat, curated, labels, cfg)
        fits.extend(trained)
        return [FoldOutput(t.validation_predictions, t.validation_log_probabilities) for t in trained]

    repeats_within = min(budget_s, cfg.training.ladder.cv_repeat_minutes * 60)
    started, ahead = time.perf_counter(), None
    with FoldPool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        if pool is not None and refit_beside_folds(cfg, workers, evaluation.folds, last):
            ahead = pool.start([refit_fit(rung, run_dir, None, ahead=True)], curated, labels, cfg)
        scored = cross_validate(evaluation, rows.labels, labels, fit_predict_folds, gate_metric(cfg), repeats_within)
        refit = FoldPool.results(ahead, rung)[0] if ahead else None
    wall = time.perf_counter() - started
    first = fits[0]
    total = lambda field: sum(getattr(f.details, field) or 0 for f in fits)  # noqa: E731
    details = dataclasses.replace(
        first.details,
        folds=scored.folds,
        train_seconds=round(total("train_seconds"), 1),
        step_seconds=round(total("step_seconds"), 1),
        training_gflop=float(f"{total('training_gflop'):.4g}"),
        fits_at_once=workers,
        wall_seconds=round(wall, 1),
        refit_ahead=_compute(refit.details) if refit else None,
    )
    metrics = cross_validated_metrics(rows.labels, scored, labels, evaluation, cfg)
    return TrainedRung(
        rung,
        None,
        metrics,
        scored.predictions,
        first.trainable_parameters,
        details,
        scored.fold_scores,
        scored.fold_losses,
    )


def refit_beside_folds(cfg: ThawConfig, workers: int, folds: int, last: bool) -> bool:
    """Whether a cross-validated rung's refit trains beside its folds: the rung is the
    last the ladder may train, the folds leave a worker idle, and the refit after the gate
    would run in one process too (``finetune.processes`` 1), so it would be the same fit."""
    return last and workers > 1 and folds % workers != 0 and cfg.training.ladder.finetune.processes == 1


def _compute(details: RungDetails) -> dict[str, float]:
    return {field: getattr(details, field) or 0.0 for field in ("train_seconds", "step_seconds", "training_gflop")}


def refit_fit(rung: str, run_dir: Path, epochs: int | None, ahead: bool = False) -> AdaptedFit:
    """The refit of ``rung`` on train + validation from the frozen rung's linear probe,
    written as the run's final model; ``ahead``: trained beside the rung's folds, its
    checkpoints alone kept (same rows and settings, so the same checkpoint key)."""
    return AdaptedFit(
        rung,
        POOL,
        None,
        linear_probe_path(run_dir),
        "refit",
        None if ahead else artifacts.final_model_dir(run_dir),
        epochs=epochs,
        select_epoch=False,
        measure_movement=not ahead,
    )


def _epochs(rung: str, cfg: ThawConfig) -> int:
    return rung_method(rung).loop(cfg.training.ladder).epochs


def needs_refit(cfg: ThawConfig, evaluation: EvaluationPlan) -> bool:
    """Refit on train + validation: always after cross-validation (no fold model is kept,
    a final fit is needed anyway), after hold-out only when ``ladder.refit: always``."""
    return evaluation.cross_validated or cfg.training.ladder.refit == "always"


@task(name="refit-selected-rung")
def refit_selected_rung(
    selection: Selection,
    trained: list[TrainedRung],
    ctx: LadderContext,
    seconds_left: float | None = None,
    weight: float = 1.0,
) -> TrainedRung:
    """The model to test and register: the selected rung itself, or its configuration
    trained again on train + validation (recorded as such in its details). After a
    hold-out fit, when the refit would end past ``seconds_left`` of the time budget at the
    fit's pace (on ``weight`` times its rows: ``thaw.time_budget.refit_weight``), the
    hold-out model is kept and its details say why."""
    curated, labels, cfg, run_dir, evaluation = ctx.curated, ctx.labels, ctx.cfg, ctx.run_dir, ctx.evaluation
    chosen = next(r for r in trained if r.rung == selection.rung)
    if not needs_refit(cfg, evaluation) or (chosen.model_dir is not None and chosen.details.trained_on == POOL.splits):
        return chosen  # the frozen rung after cross-validation was already fit on all rows
    # (an adapted rung scored by cross-validation kept no model: its folds trained on
    # parts of the same pool, so it is always refit)
    if not rung_method(chosen.rung).adapted:
        if not chosen.details.method.startswith("logistic regression"):
            return chosen  # an MLP head keeps the epoch validation chose: nothing to refit it on
        return _refit_frozen(chosen, curated, labels, cfg, run_dir)
    # after hold-out, the epochs validation chose; after cross-validation, as configured
    epochs = (chosen.details.best_epoch or None) if not evaluation.cross_validated else None
    if not evaluation.cross_validated and seconds_left is not None:
        skipped = _refit_past_budget(chosen.details, epochs or _epochs(chosen.rung, cfg), seconds_left, weight)
        if skipped:
            print(f"  {skipped}")
            return dataclasses.replace(chosen, details=dataclasses.replace(chosen.details, refit_skipped=skipped))
    final = train_adapted_rung.fn(refit_fit(chosen.rung, run_dir, epochs), curated, labels, cfg)
    ahead = chosen.details.refit_ahead
    if ahead and not final.details.step_seconds and final.details.resumed_from_epoch == final.details.epochs_run:
        # trained beside the folds (train_ladder_rung) and resumed whole here: its record is that fit's
        details = dataclasses.replace(final.details, **ahead, refit_ran_ahead=True)
        final = dataclasses.replace(final, details=details)
    return dataclasses.replace(
        final,
        validation=chosen.validation,
        validation_predictions=chosen.validation_predictions,
        fold_scores=chosen.fold_scores,
        fold_losses=chosen.fold_losses,
    )


def _refit_past_budget(details: RungDetails, epochs: int, seconds_left: float, weight: float) -> str | None:
    """Why the hold-out model is registered without its refit (None: the refit fits)."""
    from thaw.time_budget import refit_seconds

    if not details.train_seconds or not details.epochs_run:
        return None
    needed = refit_seconds(details.train_seconds, details.epochs_run, epochs, weight)
    if needed <= seconds_left:
        return None
    return (
        f"refit skipped: {epochs} epoch{'s' if epochs > 1 else ''} on train + validation would take about "
        f"{_duration(needed)} at the hold-out fit's pace, past the {_duration(seconds_left)} left of "
        "ladder.time_budget_minutes; the hold-out model (trained on train) is registered"
    )


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _refit_frozen(chosen: TrainedRung, curated: DatasetVersion, labels, cfg: ThawConfig, run_dir: Path) -> TrainedRung:
    """The frozen rung's chosen head (linear with its C, or over features and word
    n-grams) on train + validation."""
    import json

    from tasks.ladder.features import extract_frozen_features
    from tasks.ladder.frozen_rung import fit_final_head, save_head

    features = extract_frozen_features.fn(curated, cfg)
    x = np.concatenate([np.load(features.paths[s]) for s in POOL.splits])
    rows = POOL.read(curated, cfg.root)
    y = np.asarray(rows.labels)
    c = float(chosen.details.settings.get("head_C", cfg.training.head.c_without_validation))
    words_head = bool(chosen.details.settings.get("words"))
    probe_c = chosen.details.settings.get("probe_C", c) if words_head else c
    head, linear, words, name = fit_final_head(x, y, list(rows.texts), labels, float(probe_c), words_head, cfg)
    meta = json.loads((chosen.model_dir / "model.json").read_text(encoding="utf-8")) | {
        "trained_on": list(POOL.splits),
        "head": name,
    }
    save_head(artifacts.final_model_dir(run_dir), head, (linear["weight"], linear["bias"]), labels, meta, words)
    details = dataclasses.replace(
        chosen.details,
        trained_on=POOL.splits,
        method=f"{name} on the frozen backbone (refit on train + validation)",
    )
    return dataclasses.replace(chosen, model_dir=artifacts.final_model_dir(run_dir), details=details)
