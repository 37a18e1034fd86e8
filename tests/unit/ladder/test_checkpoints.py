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
