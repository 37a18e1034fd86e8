"""The fine-tuning loop shared by the PEFT, partial and full rungs.

Length-bucketed batches, AdamW with warmup then linear decay, gradient clipping,
validation every epoch, early stopping, and a checkpoint every epoch from which a
killed run resumes (same seed, same data order, same result as an uninterrupted run).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thaw.config import FineTuneConfig
from thaw.modeling import autocast_dtype, length_sorted_batches
from thaw.progress import Progress


@dataclass
class TrainOutcome:
    """How training went: best validation metric and epoch, history, where it resumed."""

    best_metric: float
    best_epoch: int
    epochs_run: int
    resumed_from_epoch: int | None
    history: list[dict] = field(default_factory=list)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar length; the order is a function of (seed, epoch) only."""
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    chunk = batch_size * 20
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(tokenizer, encoded: dict, idx: list[int], device) -> dict:
    batch = tokenizer.pad({k: [encoded[k][i] for i in idx] for k in encoded}, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def predict_classes(model, tokenizer, encoded: dict, batch_size: int, device) -> np.ndarray:
    """Class indices for every encoded example (eval mode, no gradients)."""
    import torch

    model.eval()
    out = np.zeros(len(encoded["input_ids"]), dtype=np.int64)
    dtype = autocast_dtype(device)
    with torch.inference_mode():
        for idx in length_sorted_batches([len(x) for x in encoded["input_ids"]], batch_size):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(**_collate(tokenizer, encoded, idx, device))
            out[idx] = logits.float().argmax(-1).cpu().numpy()
    return out


def trainable_state(model) -> dict:
    """Copies of the parameters that train (names as in ``model.named_parameters``)."""
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _schedule(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


class Checkpoint:
    """Per-epoch checkpoint in ``directory``: trainable weights (safetensors), the best
    weights so far, and optimizer/scheduler/RNG state. Written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def exists(self) -> bool:
        return (self.directory / "state.pt").is_file()

    def save(self, model, best: dict, optimizer, scheduler, meta: dict) -> None:
        import torch
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "tmp"
        tmp.mkdir(exist_ok=True)
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        save_file(best, str(tmp / "best.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "meta": json.dumps(meta),
            },
            tmp / "state.pt",
        )
        for name in ("trainable.safetensors", "best.safetensors", "state.pt"):  # state.pt last: it marks completeness
            (tmp / name).replace(self.directory / name)

    def load(self, model, optimizer, scheduler) -> tuple[dict, dict]:
        """Restore weights, optimizer, scheduler and RNG; return (meta, best weights)."""
        import torch
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(self.directory / "trainable.safetensors")), strict=False)
        state = torch.load(self.directory / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        return json.loads(state["meta"]), load_file(str(self.directory / "best.safetensors"))


def make_optimizer(groups: list[dict], lr: float, device):
    """AdamW over ``groups``; the fused kernel (one pass over each tensor) on CPU and CUDA."""
    import torch

    return torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


def train_classifier(
    model,
    tokenizer,
    train: dict,
    y_train: np.ndarray,
    val: dict,
    score: Callable[[np.ndarray], float],
    cfg: FineTuneConfig,
    lr: float,
    groups: list[dict],
    checkpoint: Checkpoint,
    device,
    seed: int,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``train``/``y_train``; ``score`` maps validation predictions to
    the gate's metric. Resumes from ``checkpoint`` when it holds a previous epoch."""
    import torch

    from thaw.distributed import average_gradients, barrier, is_main_process, shard

    torch.manual_seed(seed)
    lengths = [len(x) for x in train["input_ids"]]
    steps_per_epoch = len(shard(epoch_batches(lengths, cfg.batch_size, seed, 0)))
    trainable = [p for g in groups for p in g["params"]]
    optimizer = make_optimizer(groups, lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(steps_per_epoch * cfg.epochs, cfg.warmup_fraction)
    )
    meta = {"epoch": -1, "best_metric": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    best, resumed = trainable_state(model), None
    if checkpoint.exists():
        meta, best = checkpoint.load(model, optimizer, scheduler)
        resumed = meta["epoch"]
    labels_t = torch.as_tensor(y_train, dtype=torch.long)
    dtype = autocast_dtype(device)
    for epoch in range(meta["epoch"] + 1, cfg.epochs):
        if meta["bad_epochs"] >= cfg.patience:
            break
        model.train()
        losses = []
        batches = shard(epoch_batches(lengths, cfg.batch_size, seed, epoch))  # this process's share
        progress = Progress(len(batches), f"  epoch {epoch + 1} batches")
        for idx in batches:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(**_collate(tokenizer, train, idx, device))
            loss = torch.nn.functional.cross_entropy(logits.float(), labels_t[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(trainable)
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            progress()
        metric = score(predict_classes(model, tokenizer, val, cfg.batch_size * 2, device))
        meta["history"].append({"epoch": epoch, "train_loss": float(np.mean(losses)), "validation_metric": metric})
        if metric > meta["best_metric"]:
            meta.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
            best = trainable_state(model)
        else:
            meta["bad_epochs"] += 1
        meta["epoch"] = epoch
        if is_main_process():
            checkpoint.save(model, best, optimizer, scheduler, meta)
        barrier()
        if on_epoch_end:
            on_epoch_end(epoch)
    model.load_state_dict(best, strict=False)
    return TrainOutcome(meta["best_metric"], meta["best_epoch"], meta["epoch"] + 1, resumed, meta["history"])
