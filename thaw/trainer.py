"""The training loop every adapted rung shares, and the plans its phases give it.

Length-bucketed batches, AdamW with warmup then linear decay, gradient clipping,
validation every epoch, early stopping, and a checkpoint every epoch from which a
killed run resumes (same seed, same data order, same result as an uninterrupted run).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thaw.config import FineTuneConfig
from thaw.modeling import autocast_dtype, collate, length_sorted_batches
from thaw.progress import Progress

# Rows per forward chunk of a contrastive batch, for an encoder thaw.packed does not
# know (a BERT-shaped one computes the whole batch's real tokens at once). On CLINC150
# queries at 10 per class (class-balanced batches of 64, MiniLM's tokenizer) padding was
# 49% of the tokens of whole batches and 17% with chunks of 16; a training step took
# 1.24-1.35 s against 1.39-1.43 s in fp32 on a 2-core AVX2 machine (smaller matrix
# products cost some of it).
CHUNK_ROWS = 16


@dataclass
class TrainOutcome:
    """How training went: best validation metric and epoch, history, where it resumed."""

    best_metric: float
    best_epoch: int
    epochs_run: int
    resumed_from_epoch: int | None
    history: list[dict] = field(default_factory=list)
    steps: int = 0  # optimiser steps taken by this process in this call (a resumed fit counts what it ran)
    step_seconds: float = 0.0  # their wall time: forward, backward and update, not validation or checkpoints
    tokens: int = 0  # the real (unpadded) tokens those steps trained on
    planned_epochs: int = 0  # epochs the decay was aimed at in the end (fewer than configured: cut for a deadline)


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


def predict_classes(model, tokenizer, encoded: dict, batch_size: int, device, prefix=None) -> np.ndarray:
    """Class indices for every encoded example (eval mode, no gradients); ``prefix``: the
    rows' ``thaw.frozen_prefix.FrozenPrefix``, replayed instead of the frozen blocks."""
    return predict_log_probabilities(model, tokenizer, encoded, batch_size, device, prefix).argmax(1)


def predict_log_probabilities(model, tokenizer, encoded: dict, batch_size: int, device, prefix=None) -> np.ndarray:
    """Each encoded example's log-probability of every class (rows x classes, float32;
    the softmax in fp32 whatever precision the forward ran in), as ``predict_classes``."""
    import torch

    from thaw.frozen_prefix import replaying

    model.eval()
    out = None
    dtype = autocast_dtype(device)
    with torch.inference_mode():
        for idx in length_sorted_batches([len(x) for x in encoded["input_ids"]], batch_size):
            features = collate(tokenizer, encoded, idx, device)
            with replaying(prefix, idx, features), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(**features)
            scores = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(encoded["input_ids"]), scores.shape[1]), dtype=np.float32)
            out[idx] = scores
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def trainable_state(model) -> dict:
    """Copies of the parameters that train (names as in ``model.named_parameters``)."""
    return {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _schedule(total_steps: int, warmup: int):
    """Linear warmup over ``warmup`` steps, then linear decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


FINISHED = "meta.json"  # in a finished fit's checkpoint, in place of its resumable state


class Checkpoint:
    """Per-epoch checkpoint under ``directory``: trainable weights (safetensors), the best
    weights so far, and optimizer/scheduler/RNG state. Each epoch is one directory
    (``epoch-NNNN``) written whole and renamed into place (``thaw.content_cache``), so a
    process killed mid-write leaves the previous epoch intact, never a mix of two.

    A finished fit's epoch keeps only what a later run reads from it (the best weights
    and the loop's record, ``meta.json``): nothing resumes from it, so the last weights,
    the optimizer's moments and the RNG state (131 of the 176 MB a few-shot fit of MiniLM
    wrote: 44 MB each of weights and best weights, 87 MB of state) would only fill the
    disk, once per fold, rung and dataset version."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def latest(self) -> Path | None:
        """The newest complete epoch directory, or None."""
        from thaw.content_cache import is_complete

        epochs = sorted(self.directory.glob("epoch-*")) if self.directory.is_dir() else []
        return next((e for e in reversed(epochs) if is_complete(e)), None)

    def exists(self) -> bool:
        return self.latest() is not None

    def save(self, model, best: dict, optimizer, scheduler, meta: dict, finished: bool = False) -> None:
        """This epoch's checkpoint, the older ones removed; ``finished``: the fit's last,
        kept as its best weights and ``meta`` alone."""
        import shutil

        import torch
        from safetensors.torch import save_file

        from thaw.content_cache import directory_written_whole

        final = self.directory / f"epoch-{meta['epoch']:04d}"
        with directory_written_whole(final) as staging:
            save_file(best, str(staging / "best.safetensors"))
            if finished:
                (staging / FINISHED).write_text(json.dumps({**meta, "finished": True}), encoding="utf-8")
            else:
                save_file(trainable_state(model), str(staging / "trainable.safetensors"))
                torch.save(
                    {
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(),
                        "meta": json.dumps(meta),
                    },
                    staging / "state.pt",
                )
        for older in self.directory.glob("epoch-*"):
            if older.name < final.name:
                shutil.rmtree(older, ignore_errors=True)

    def load(self, model, optimizer, scheduler) -> tuple[dict, dict]:
        """Restore weights, optimizer, scheduler and RNG; return (meta, best weights). A
        finished fit's checkpoint restores its best weights alone (``meta["finished"]``)."""
        import torch
        from safetensors.torch import load_file

        from thaw.content_cache import touch

        latest = self.latest()
        touch(latest)  # a use: thaw.state_budget keeps the most recently used
        if (latest / FINISHED).is_file():
            best = load_file(str(latest / "best.safetensors"))
            model.load_state_dict(best, strict=False)
            return json.loads((latest / FINISHED).read_text(encoding="utf-8")), best
        model.load_state_dict(load_file(str(latest / "trainable.safetensors")), strict=False)
        state = torch.load(latest / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        return json.loads(state["meta"]), load_file(str(latest / "best.safetensors"))


def make_optimizer(groups: list[dict], lr: float, device):
    """AdamW over ``groups``; the fused kernel (one pass over each tensor) on CPU and CUDA."""
    import torch

    return torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


@dataclass(frozen=True)
class TrainPlan:
    """What a training loop does each epoch: which batches (a function of the epoch only,
    so a resumed run sees the same ones), the loss of a batch, and the score on
    validation after the epoch (None: no validation, the last epoch's weights are kept)."""

    batches: Callable[[int], list[list[int]]]
    loss: Callable[[object, list[int]], object]
    evaluate: Callable[[object], float] | None
    tokens: Callable[[list[int]], int] = len  # real tokens in a batch (default: one per row)


def train_loop(
    model,
    plan: TrainPlan,
    cfg: FineTuneConfig,
    lr: float,
    groups: list[dict],
    checkpoint: Checkpoint,
    device,
    seed: int,
    on_epoch_end: Callable[[int], None] | None = None,
    deadline: float | None = None,
) -> TrainOutcome:
    """AdamW with warmup then linear decay, clipping, early stopping on the plan's score,
    a checkpoint after the last epoch and after any epoch that ends ``checkpoint_seconds``
    after the previous one was saved; resumes from ``checkpoint`` when it holds an epoch.
    ``deadline`` (``time.time()`` seconds): a tenth into the first epoch and after each
    epoch, plan only the epochs that end before it at the pace so far, the decay re-aimed
    to end with them (``thaw.time_budget.epochs_within``).
    Data-parallel under a launcher: each process takes its share of every epoch's batches."""
    import torch

    from thaw.distributed import agree, barrier, is_main_process, shard
    from thaw.time_budget import epochs_within

    torch.manual_seed(seed)
    steps_per_epoch = len(shard(plan.batches(0)))
    warmup = max(1, int(steps_per_epoch * cfg.epochs * cfg.warmup_fraction))
    trainable = [p for g in groups for p in g["params"]]
    optimizer = make_optimizer(groups, lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps_per_epoch * cfg.epochs, warmup))
    meta = {"epoch": -1, "best_metric": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    best, resumed = trainable_state(model), None
    if checkpoint.exists():
        meta, best = checkpoint.load(model, optimizer, scheduler)
        resumed = meta["epoch"]
    planned = meta.get("planned_epochs", cfg.epochs)

    def aim_decay(epochs: int) -> None:  # the schedule's closure is not in its state_dict
        scheduler.lr_lambdas = [_schedule(steps_per_epoch * epochs, warmup)] * len(optimizer.param_groups)

    def replan(done: float, epoch_seconds: float) -> None:  # every process keeps rank 0's plan
        nonlocal planned
        within = agree(epochs_within(planned, done, epoch_seconds, deadline - time.time()))
        if within < planned:
            print(f"  {within} of {planned} epochs end before the deadline at {epoch_seconds:.1f} s an epoch")
            planned = meta["planned_epochs"] = within
            aim_decay(planned)

    aim_decay(planned)
    saved_at = time.monotonic()
    steps, step_seconds, tokens, epoch_seconds = 0, 0.0, 0, []
    probe = max(1, steps_per_epoch // 10)  # steps into the first epoch when the pace is first read
    first = planned if meta.get("finished") else meta["epoch"] + 1  # a finished fit has nothing to resume
    for epoch in range(first, planned):
        if meta["bad_epochs"] >= cfg.patience or epoch >= planned:  # planned may shrink below
            break
        epoch_started = time.monotonic()
        model.train()
        losses = []
        batches = shard(plan.batches(epoch))  # this process's share
        progress = Progress(len(batches), f"  epoch {epoch + 1} batches")
        for step, idx in enumerate(batches, 1):
            if deadline is not None and not epoch_seconds and step == probe + 1:
                # before most of the first epoch: its steps' pace, so the decay can be aimed in time
                replan(epoch + probe / steps_per_epoch, (time.monotonic() - epoch_started) / probe * steps_per_epoch)
            step_started = time.perf_counter()
            losses.append(optimiser_step(model, plan, idx, optimizer, scheduler, trainable, cfg.max_grad_norm))
            steps, step_seconds = steps + 1, step_seconds + time.perf_counter() - step_started
            tokens += plan.tokens(idx)
            progress()
        if _record_epoch(meta, epoch, losses, plan.evaluate(model) if plan.evaluate else None):
            best = trainable_state(model)
        epoch_seconds.append(time.monotonic() - epoch_started)
        if deadline is not None:  # the epochs' own pace, validation included
            replan(epoch + 1, sum(epoch_seconds) / len(epoch_seconds))
        last = epoch == planned - 1 or meta["bad_epochs"] >= cfg.patience
        if is_main_process() and (last or time.monotonic() - saved_at >= cfg.checkpoint_seconds):
            checkpoint.save(model, best, optimizer, scheduler, meta, finished=last)
            saved_at = time.monotonic()
        barrier()
        if on_epoch_end:
            on_epoch_end(epoch)
    model.load_state_dict(best, strict=False)
    best_metric, best_epoch, epochs_run = meta["best_metric"], meta["best_epoch"], meta["epoch"] + 1
    return TrainOutcome(
        best_metric, best_epoch, epochs_run, resumed, meta["history"], steps, step_seconds, tokens, planned
    )


def optimiser_step(
    model, plan: TrainPlan, idx: list[int], optimizer, scheduler, trainable: list, max_grad_norm: float
) -> float:
    """One optimiser step on batch ``idx``: the loss's gradients, averaged across processes
    under a launcher, clipped and applied; the loss."""
    import torch

    from thaw.distributed import average_gradients

    loss = plan.loss(model, idx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(trainable)
    torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())  # waits for the device: the step's time is whole


def _record_epoch(meta: dict, epoch: int, losses: list[float], metric: float | None) -> bool:
    """The epoch's mean loss and validation score in ``meta``'s history; whether it is the
    best so far (without validation, every epoch is: the last is kept), else one more
    epoch without gain towards the patience."""
    meta["history"].append({"epoch": epoch, "train_loss": float(np.mean(losses)), "validation_metric": metric})
    meta["epoch"] = epoch
    if metric is None or metric > meta["best_metric"]:
        meta.update(best_metric=metric if metric is not None else -1.0, best_epoch=epoch, bad_epochs=0)
        return True
    meta["bad_epochs"] += 1
    return False


def classification_plan(
    tokenizer,
    train: dict,
    y_train: np.ndarray,
    val: dict | None,
    score,
    batch_size: int,
    seed: int,
    device,
    prefixes: tuple = (None, None),
) -> TrainPlan:
    """Cross-entropy on length-bucketed batches; scored by ``score`` of the validation
    predictions (no validation: ``val`` None). ``prefixes``: the train and validation
    rows' ``thaw.frozen_prefix.FrozenPrefix`` (or None), replayed for the frozen blocks."""
    import torch

    from thaw.frozen_prefix import replaying

    lengths = [len(x) for x in train["input_ids"]]
    labels_t = torch.as_tensor(y_train, dtype=torch.long)
    dtype = autocast_dtype(device)
    train_prefix, val_prefix = prefixes

    def loss(model, idx):
        features = collate(tokenizer, train, idx, device)
        amp = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
        with replaying(train_prefix, idx, features), amp:
            logits = model(**features)
        return torch.nn.functional.cross_entropy(logits.float(), labels_t[idx].to(device))

    evaluate = None
    if val is not None:
        evaluate = lambda model: score(  # noqa: E731
            predict_classes(model, tokenizer, val, batch_size * 2, device, val_prefix)
        )
    return TrainPlan(
        lambda epoch: epoch_batches(lengths, batch_size, seed, epoch), loss, evaluate, _token_count(lengths)
    )


def class_balanced_batches(
    y: np.ndarray, classes_per_batch: int, rows_per_class: int, seed: int, epoch: int
) -> list[list[int]]:
    """Batches of ``classes_per_batch`` classes with up to ``rows_per_class`` rows each, so
    every row has same-class partners in its batch; about one pass over the rows per epoch."""
    rng = random.Random(seed * 1000 + epoch)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(y.tolist()):
        by_class.setdefault(label, []).append(i)
    usable = sorted(c for c, rows in by_class.items() if len(rows) >= 2)
    if not usable:
        return []
    per_batch = max(2, min(classes_per_batch, len(usable))) * rows_per_class
    batches = []
    for _ in range(max(1, len(y) // per_batch)):
        chosen = rng.sample(usable, min(classes_per_batch, len(usable)))
        batches.append([i for c in chosen for i in rng.sample(by_class[c], min(rows_per_class, len(by_class[c])))])
    return batches


def length_chunks(idx: Sequence[int], lengths: Sequence[int], rows: int = CHUNK_ROWS) -> list[list[int]]:
    """``idx`` sorted by length and cut into chunks of ``rows``: each chunk is padded only
    to its own longest row. The encoder treats rows independently (attention is masked
    within a row, no batch statistics), so embeddings are those of the whole batch."""
    ordered = sorted(idx, key=lambda i: lengths[i])
    return [ordered[i : i + rows] for i in range(0, len(ordered), rows)]


def supervised_contrastive_loss(embeddings, labels, temperature: float):
    """Khosla et al.'s supervised contrastive loss on L2-normalised embeddings: each row is
    pulled towards the other rows of its class in the batch and pushed from the rest."""
    import torch

    sim = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(labels), dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    per_row = -(log_prob.masked_fill(~positives, 0.0)).sum(1) / positives.sum(1).clamp(min=1)
    return per_row[positives.any(1)].mean()


def contrastive_plan(
    tokenizer,
    train: dict,
    y_train: np.ndarray,
    classes_per_batch: int,
    rows_per_class: int,
    temperature: float,
    seed: int,
    device,
) -> TrainPlan:
    """The few-shot rung's objective: supervised contrastive loss on class-balanced batches."""
    import torch

    labels_t = torch.as_tensor(y_train, dtype=torch.long)
    dtype = autocast_dtype(device)
    lengths = [len(ids) for ids in train["input_ids"]]

    def loss(model, idx):
        # a class-balanced batch mixes lengths: packed (thaw.packed), its linear layers
        # compute no padding; else embedded in length-sorted chunks, so the padding the
        # longest row would force on the whole batch is not computed
        chunks = [list(idx)] if model.can_pack() else length_chunks(idx, lengths)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            embedded = torch.cat([model.embed(**collate(tokenizer, train, c, device)).float() for c in chunks])
        rows = [i for c in chunks for i in c]
        return supervised_contrastive_loss(embedded, labels_t[rows].to(device), temperature)

    return TrainPlan(
        lambda epoch: class_balanced_batches(y_train, classes_per_batch, rows_per_class, seed, epoch),
        loss,
        None,
        _token_count(lengths),
    )


def _token_count(lengths: Sequence[int]) -> Callable[[list[int]], int]:
    return lambda idx: sum(lengths[i] for i in idx)
