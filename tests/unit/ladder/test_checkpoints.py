"""Fine-tuning checkpoints: keyed by what shapes a fit, and written one whole epoch at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, SplitRows, TrackedFile


def _key(tmp_path: Path, **changes) -> str:
    from tasks.ladder.finetuning import AdaptedFit, checkpoint_key

    head = tmp_path / "linear_head.safetensors"
    if not head.exists():
        head.write_bytes(b"probe")
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path), **changes})
    fit = AdaptedFit("full", SplitRows(("train",)), SplitRows(("validation",)), head, "holdout", None)
    curated = DatasetVersion("d", "x", {"train": TrackedFile("t.csv", "0" * 32, 1)}, "none")
    return checkpoint_key(cfg, fit, curated, "rev", "cpu-fp32")


def test_the_checkpoint_key_ignores_what_does_not_shape_the_fit(tmp_path):
    base = _key(tmp_path)
    assert _key(tmp_path, tracking={"tracking_uri": "http://127.0.0.1:5999"}) == base
    assert _key(tmp_path, training={"ladder": {"alpha": 0.01, "rungs": ["frozen", "full"]}}) == base
    assert _key(tmp_path, training={"ladder": {"finetune": {"epochs": 7}}}) != base
    assert _key(tmp_path, training={"seed": 99}) != base


def test_a_write_killed_mid_epoch_leaves_the_previous_epoch_to_resume_from(tmp_path):
    torch = pytest.importorskip("torch")
    from thaw.trainer import Checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = Checkpoint(tmp_path / "ck")
    best = {n: p.detach().clone() for n, p in model.named_parameters()}
    checkpoint.save(model, best, optimizer, scheduler, {"epoch": 0, "history": []})
    saved = {n: p.detach().clone() for n, p in model.named_parameters()}
    # epoch 1 dies between its files: what it left is a staging directory, not an epoch
    shutil.copytree(checkpoint.latest(), tmp_path / "ck" / ".epoch-0001.dead.partial")
    (tmp_path / "ck" / ".epoch-0001.dead.partial" / "state.pt").unlink()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert checkpoint.latest().name == "epoch-0000"
    meta, _ = checkpoint.load(model, optimizer, scheduler)
    assert meta["epoch"] == 0 and torch.equal(model.weight, saved["weight"])
    checkpoint.save(model, best, optimizer, scheduler, {"epoch": 1, "history": []})
    assert sorted(p.name for p in (tmp_path / "ck").glob("epoch-*")) == ["epoch-0001"]  # the older epoch is gone


def test_a_finished_fit_keeps_its_best_weights_alone_and_a_rerun_takes_them_without_training(tmp_path):
    torch = pytest.importorskip("torch")
    from thaw.config import FineTuneConfig
    from thaw.trainer import Checkpoint, TrainPlan, train_loop

    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 4)
    scores = iter([0.5, 0.9, 0.7])  # the second epoch is the best on validation

    def fit(model):
        plan = TrainPlan(
            batches=lambda epoch: [[0, 1, 2, 3], [4, 5, 6, 7]],
            loss=lambda m, idx: torch.nn.functional.cross_entropy(m(x[idx]), y[idx]),
            evaluate=lambda m: next(scores),
        )
        groups = [{"params": list(model.parameters())}]
        cfg = FineTuneConfig(epochs=3, patience=3, warmup_fraction=0.1, checkpoint_seconds=0)
        return train_loop(model, plan, cfg, 0.1, groups, Checkpoint(tmp_path / "ck"), torch.device("cpu"), 0)

    torch.manual_seed(0)
    first = torch.nn.Linear(4, 2)
    done = fit(first)
    assert (done.epochs_run, done.best_epoch, done.steps) == (3, 1, 6)
    (epoch,) = (tmp_path / "ck").glob("epoch-*")
    assert epoch.name == "epoch-0002"
    assert sorted(p.name for p in epoch.iterdir()) == ["best.safetensors", "complete.json", "meta.json"]

    torch.manual_seed(1)
    again = torch.nn.Linear(4, 2)  # other weights: the checkpoint's best must replace them
    rerun = fit(again)
    assert (rerun.resumed_from_epoch, rerun.steps, rerun.best_epoch, rerun.epochs_run) == (2, 0, 1, 3)
    assert torch.equal(again.weight, first.weight) and torch.equal(again.bias, first.bias)
