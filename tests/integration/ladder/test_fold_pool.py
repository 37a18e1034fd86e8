"""Cross-validation folds fitted side by side in worker processes (tasks.ladder.fold_pool):
the same fits as one after another in this process, errors raised as they were, and no
process left behind. Tiny random encoder, real spawned workers."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from tasks.ladder.cross_validation import POOL
from tasks.ladder.finetuning import AdaptedFit, fit_adapted_rung
from tasks.ladder.fold_pool import FoldPool
from tests.integration.ladder.test_small_data import LABELS, config, make_splits
from thaw.datasets import SplitRows
from thaw.rungs import EvaluationPlan

pytestmark = pytest.mark.integration


def fold_fits(workspace, curated, cfg, rung: str) -> list[AdaptedFit]:
    head = workspace / "probe.safetensors"
    rng = np.random.default_rng(0)
    save_file({"weight": rng.normal(0, 0.1, (len(LABELS), 32)).astype(np.float32), "bias": np.zeros(len(LABELS))}, head)
    pooled = POOL.read(curated, cfg.root)
    plan = EvaluationPlan("cross-validation", 3, 1, 13, 0.0, 3, "test")
    return [
        AdaptedFit(
            rung, SplitRows(POOL.splits, kept), SplitRows(POOL.splits, held), head, name, None, select_epoch=False
        )
        for name, kept, held in plan.fold_rows(list(pooled.labels))
    ]


@pytest.mark.parametrize("rung", ["fewshot", "partial"])
def test_folds_side_by_side_are_the_fits_one_after_another(workspace, tiny_encoder, rung):
    curated = make_splits(workspace, {"train": 4, "validation": 2})
    cfg = config(workspace, tiny_encoder, rungs=["frozen", rung])
    fits = fold_fits(workspace, curated, cfg, rung)
    before = set(multiprocessing.active_children())
    with FoldPool(2) as pool:
        side_by_side = pool.fit(fits, curated, LABELS, cfg)
    assert set(multiprocessing.active_children()) == before  # the workers stopped with the block
    shutil.rmtree(cfg.state_path / "checkpoints")  # else the fits below would resume the pool's
    threads = torch.get_num_threads()
    try:
        alone = [fit_adapted_rung(fit, curated, LABELS, cfg, threads=lambda: 1) for fit in fits]
    finally:
        torch.set_num_threads(threads)  # the tests after this one get the cores back

    assert len(side_by_side) == len(alone) == 3
    for a, b in zip(side_by_side, alone, strict=True):
        assert a.details.resumed_from_epoch is None and b.details.resumed_from_epoch is None
        assert len(a.validation_predictions) == len(b.validation_predictions) > 0
        assert a.validation_predictions == b.validation_predictions  # in fold order, fold for fold
        assert a.details.epochs_run == b.details.epochs_run
        losses = [[h.train_loss for h in r.details.history] for r in (a, b)]
        assert losses[0] == pytest.approx(losses[1], rel=1e-3)  # thread counts may move the last digits


def test_a_fits_own_error_comes_back_as_it_was_and_ends_the_fits_still_running(workspace, tiny_encoder):
    curated = make_splits(workspace, {"train": 40, "validation": 10})
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "partial"], finetune={"epochs": 2000, "batch_size": 8})
    long = fold_fits(workspace, curated, cfg, "partial")[0]  # minutes of epochs
    broken = AdaptedFit(long.rung, long.train, long.validation, workspace / "no-probe.safetensors", "cv-r0-f1", None)
    before = set(multiprocessing.active_children())
    with pytest.raises(FileNotFoundError), FoldPool(2) as pool:
        pool.fit([long, broken], curated, LABELS, cfg)  # waits on the long fit first, yet raises at once
    assert set(multiprocessing.active_children()) == before
    # the long fit was ended, not waited for: it never wrote its last epoch's checkpoint
    assert not list((cfg.state_path / "checkpoints").glob("*/epoch-1999"))


def test_the_last_rungs_refit_runs_beside_its_folds_and_is_what_selecting_it_registers(
    workspace, tiny_encoder, prefect_harness
):
    from tasks.ladder.rung_training import refit_selected_rung, train_ladder_rung
    from tasks.ladder.transfer_note import write_transfer_note
    from tests.integration.ladder.test_small_data import climb
    from thaw.rungs import LadderContext
    from thaw.serving import ThawPredictor

    curated = make_splits(workspace, {"train": 2, "validation": 1, "test": 1})
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "fewshot"], cv_workers=2)
    result = climb(workspace, cfg, curated)  # 3 folds on 2 workers: one is free for the refit
    fewshot = next(r for r in result.trained if r.rung == "fewshot")
    assert fewshot.details.fits_at_once == 2 and fewshot.details.folds == 3
    ahead = fewshot.details.refit_ahead
    # it trained: work counted from its tokens (its step time is rounded to 0.1 s, which a tiny encoder may not reach)
    assert ahead is not None and ahead["training_gflop"] > 0 and ahead["step_seconds"] >= 0

    ctx = LadderContext(curated, LABELS, cfg, workspace / "run", result.evaluation)
    picked = dataclasses.replace(result.selection, rung="fewshot")
    final = refit_selected_rung.fn(picked, result.trained, ctx, seconds_left=0.0)
    # resumed whole from the fit beside the folds, and recorded as that fit
    assert final.details.refit_ran_ahead and final.details.resumed_from_epoch == final.details.epochs_run
    assert (final.details.step_seconds, final.details.training_gflop) == (
        ahead["step_seconds"],
        ahead["training_gflop"],
    )
    assert final.details.trained_on == ("train", "validation") and final.details.movement is not None
    texts = ["refund my card please", "password reset help", "where is my delivery", "cancel my account"]
    resumed = ThawPredictor(final.model_dir).probabilities(texts)
    # and the auditor's transfer note says where the registered model was trained
    write_transfer_note.fn(dataclasses.replace(result, selection=picked, final=final), ctx)
    note = json.loads((workspace / "run" / "transfer_note.json").read_text())
    assert note["registered"]["refit"] and note["registered"]["refit_ran_ahead"]
    assert "trained beside its cross-validation folds" in (workspace / "run" / "transfer_note.md").read_text()

    shutil.rmtree(cfg.state_path / "checkpoints")  # the same refit trained here, after the gate
    again = refit_selected_rung.fn(picked, result.trained, ctx, seconds_left=0.0)
    assert not again.details.refit_ran_ahead and again.details.resumed_from_epoch is None
    # it trained here: work counted from its tokens (its step_seconds, rounded to 0.1 s, read 0.0 in a CI run)
    assert again.details.training_gflop > 0 and again.details.epochs_run >= 1
    np.testing.assert_allclose(ThawPredictor(again.model_dir).probabilities(texts), resumed, atol=1e-3)

    # not the last rung the ladder may train: no refit ahead (its folds resume from their checkpoints)
    assert train_ladder_rung.fn("fewshot", ctx, 1e9, last=False).details.refit_ahead is None
