"""Training phases the rungs share: what one step of a fit does to the fit's state.

A phase gets a ``FitState`` (the classifier with the rung's surface opened, tokenizer,
rows, settings) and trains ``state.model`` in place; a phase that runs the shared loop
(``thaw.trainer.train_loop``) leaves its ``TrainOutcome`` in ``state.outcome``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from thaw.config import FineTuneConfig, ThawConfig
    from thaw.datasets import Split
    from thaw.trainer import TrainOutcome


@dataclass
class FitState:
    """One fit of an adapted rung while its phases run."""

    model: Any  # thaw.adaptation.build_classifier's model, surface applied
    tokenizer: Any
    device: Any
    cfg: ThawConfig
    labels: tuple[str, ...]
    train: Split
    validation: Split | None
    train_encoded: dict
    validation_encoded: dict | None
    learning_rate: float
    layer_decay: float
    loop: FineTuneConfig
    checkpoint: Path  # this fit's checkpoint: a phase that loops keeps its own beside it, named after the phase
    select_epoch: bool  # keep the epoch best on validation (False: the last)
    on_epoch_end: Callable[[int], None] | None = None
    deadline: float | None = None  # time.time() by which a loop plans its epochs to end (thaw.time_budget)
    # a fixed count for the rung's cross-entropy loop (fine_tune): a refit repeats the
    # epochs validation chose; None: as configured. Contrastive passes are sized in steps.
    epochs: int | None = None
    outcome: TrainOutcome | None = None
    step_seconds: float = 0.0  # over every loop a phase ran: the optimiser steps' wall time
    training_flops: int = 0  # and their matmul FLOPs (thaw.adaptation.training_flops_per_token)
    replayed_blocks: int = 0  # frozen blocks the steps replayed from thaw.frozen_prefix, not ran
    # (count, "train" | "validation") -> those rows' FrozenPrefix, e.g. from a cache shared
    # with the fit's other phases and fits; None: computed here from the encoded rows
    prefix_source: Callable[[int, str], Any] | None = None
    prefixes: tuple = (None, None)  # the train and validation rows' FrozenPrefix, once a phase replays them
    settings: dict[str, float | str] = dataclasses.field(default_factory=dict)  # what phases chose, for the record

    def label_codes(self, split: Split) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[y] for y in split.labels])


def _groups(state: FitState, with_head: bool) -> list[dict]:
    from thaw.adaptation import parameter_groups

    f = state.cfg.training.ladder.finetune
    groups = parameter_groups(state.model, state.learning_rate, f.head_learning_rate, state.layer_decay, f.weight_decay)
    if with_head:
        return groups
    head = {id(p) for p in state.model.head.parameters()}
    groups = [{**g, "params": [p for p in g["params"] if id(p) not in head]} for g in groups]
    return [g for g in groups if g["params"]]


def _run_loop(state: FitState, phase: str, plan, groups: list[dict]) -> None:
    from thaw.adaptation import training_flops_per_token
    from thaw.trainer import Checkpoint, train_loop

    if not state.select_epoch:
        plan = dataclasses.replace(plan, evaluate=None)
    checkpoint = Checkpoint(state.checkpoint.with_name(f"{state.checkpoint.name}-{phase}"))
    seed = state.cfg.training.seed
    state.outcome = train_loop(
        state.model,
        plan,
        state.loop,
        state.learning_rate,
        groups,
        checkpoint,
        state.device,
        seed,
        state.on_epoch_end,
        state.deadline,
    )
    state.step_seconds += state.outcome.step_seconds
    flops = training_flops_per_token(state.model.encoder, state.replayed_blocks)
    state.training_flops += state.outcome.tokens * flops


def _frozen_prefixes(state: FitState) -> tuple:
    """The train and validation rows' ``FrozenPrefix`` when the encoder's lowest blocks
    and embeddings are frozen and their states fit in ``finetune.frozen_prefix_mb``;
    (None, None) otherwise. From ``state.prefix_source`` when it has them for exactly
    these rows, else computed. Recorded in the fit's settings as ``replayed_blocks``."""
    from thaw.frozen_prefix import FrozenPrefix, frozen_block_count
    from thaw.modeling import autocast_dtype

    encoder, budget = state.model.encoder, state.cfg.training.ladder.finetune.frozen_prefix_mb
    count = frozen_block_count(encoder, state.tokenizer)
    sets = {"train": state.train_encoded, "validation": state.validation_encoded if state.select_epoch else None}
    lengths = [len(ids) for encoded in sets.values() if encoded for ids in encoded["input_ids"]]
    if not budget:
        count = 0  # switched off: nothing to say
    elif count and (needed := FrozenPrefix.megabytes(encoder, lengths, autocast_dtype(state.device))) > budget:
        print(
            f"  every block runs in every step: replaying the {count} frozen ones needs {needed:,.0f} MB, "
            f"over finetune.frozen_prefix_mb ({budget:,.0f})"
        )
        count = 0
    state.replayed_blocks = state.settings["replayed_blocks"] = count
    if not count:
        return None, None

    def prefix(rows: str, encoded: dict):
        if state.prefix_source is not None:
            given = state.prefix_source(count, rows)
            if given.lengths() == [len(ids) for ids in encoded["input_ids"]]:
                return given
            print(f"  the {rows} rows' cached frozen states do not match the fit's rows: computed again")
        batch = state.cfg.backbone.batch_size
        return FrozenPrefix.compute(state.model, state.tokenizer, encoded, state.device, batch, count)

    state.prefixes = tuple(prefix(rows, encoded) if encoded else None for rows, encoded in sets.items())
    return state.prefixes


def fine_tune(state: FitState) -> None:
    """Cross-entropy on encoder and head, scored on validation with the gate's metric;
    frozen lower blocks run once per row, not once per step (``thaw.frozen_prefix``)."""
    from thaw.metrics import macro_f1
    from thaw.trainer import classification_plan

    if state.epochs is not None:
        state.loop = state.loop.model_copy(update={"epochs": state.epochs})

    names = np.asarray(state.labels)
    y_val = np.asarray(state.validation.labels) if state.validation else None
    if state.cfg.training.ladder.metric == "accuracy":
        score = lambda pred: float((names[pred] == y_val).mean())  # noqa: E731
    else:
        score = lambda pred: macro_f1(y_val, names[pred], state.labels)  # noqa: E731
    plan = classification_plan(
        state.tokenizer,
        state.train_encoded,
        state.label_codes(state.train),
        state.validation_encoded,
        score,
        state.loop.batch_size,
        state.cfg.training.seed,
        state.device,
        _frozen_prefixes(state),
    )
    _run_loop(state, "fine_tune", plan, _groups(state, with_head=True))


def add_label_names(state: FitState) -> None:
    """Each class's label read as words (``book_flight`` -> "book flight") as
    ``fewshot.label_name_rows`` more training rows of that class, seen by the contrastive
    batches and the head alike; labels that are codes (``LABEL_3``, ``w2``: see
    ``thaw.text_form.label_words``) add nothing. Held-out rows are never touched:
    cross-validation scores the recipe with its label names."""
    from thaw.datasets import Split
    from thaw.modeling import encode_texts
    from thaw.text_form import label_words

    copies = state.cfg.training.ladder.fewshot.label_name_rows
    words = label_words(state.labels) if copies else {}
    if not words:
        state.settings["label_name_rows"] = 0
        return
    labels = [label for label in state.labels if label in words for _ in range(copies)]
    texts = [words[label] for label in labels]
    ids = [f"label-name-{i}" for i in range(len(labels))]
    train = state.train
    slices = train.slices + [""] * len(labels) if train.slices is not None else None
    state.train = Split(train.ids + ids, train.texts + texts, train.labels + labels, slices)
    added = encode_texts(state.tokenizer, texts, state.cfg.backbone.max_length)
    state.train_encoded = {k: list(v) + list(added[k]) for k, v in state.train_encoded.items()}
    state.settings["label_name_rows"] = len(labels)


def train_embeddings(state: FitState) -> None:
    """Supervised contrastive loss on class-balanced batches, on the encoder alone, for
    about ``fewshot.steps`` optimiser steps (whole passes, at most ``fewshot.epochs``)."""
    from thaw.trainer import class_balanced_batches, contrastive_plan

    fs = state.cfg.training.ladder.fewshot
    codes = state.label_codes(state.train)
    per_pass = len(class_balanced_batches(codes, fs.classes_per_batch, fs.rows_per_class, state.cfg.training.seed, 0))
    passes = min(fs.epochs, max(1, -(-fs.steps // max(per_pass, 1))))  # about fs.steps steps
    state.loop = state.loop.model_copy(update={"epochs": passes})
    plan = contrastive_plan(
        state.tokenizer,
        state.train_encoded,
        state.label_codes(state.train),
        fs.classes_per_batch,
        fs.rows_per_class,
        fs.temperature,
        state.cfg.training.seed,
        state.device,
    )
    _run_loop(state, "train_embeddings", plan, _groups(state, with_head=False))


def train_classifier(state: FitState) -> None:
    """A logistic-regression head on the (tuned) encoder's embeddings, C chosen on
    validation when there is one, written into ``state.model.head``."""
    import torch

    from thaw.heads import fit_logistic_head
    from thaw.modeling import embed_texts

    model, cfg = state.model, state.cfg
    embed = lambda texts: embed_texts(texts, state.tokenizer, model.encoder, cfg.backbone, state.device)  # noqa: E731
    val = state.validation
    x = {"train": embed(state.train.texts), "validation": embed(val.texts) if val else None}
    y = {"train": np.asarray(state.train.labels), "validation": np.asarray(val.labels) if val else None}
    weight, bias, _, _ = fit_logistic_head(x, y, state.labels, cfg)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias).clamp(min=-30))


def train_end_to_end(state: FitState) -> None:
    """SetFit's end-to-end step: after the head is fitted on the tuned embeddings,
    cross-entropy on the encoder's open surface and the head together, from that head
    (LP-FT), for ``fewshot.end_to_end_epochs`` passes at ``end_to_end_learning_rate``
    with the shared loop's batches (``fine_tune``); 0 epochs: the head is kept as fitted."""
    fs, finetune = state.cfg.training.ladder.fewshot, state.cfg.training.ladder.finetune
    epochs = (state.epochs or fs.end_to_end_epochs) if fs.end_to_end_epochs else 0  # a refit repeats its count
    state.settings["end_to_end_epochs"] = epochs
    if not epochs:
        return
    state.loop = finetune.model_copy(update={"epochs": epochs})
    state.learning_rate, state.layer_decay = fs.end_to_end_learning_rate, 1.0
    state.settings["end_to_end_learning_rate"] = fs.end_to_end_learning_rate
    with _only_top_blocks(state, fs.end_to_end_blocks):
        fine_tune(state)


@contextlib.contextmanager
def _only_top_blocks(state: FitState, count: int | None) -> Iterator[None]:
    """Within: only the encoder's top ``count`` blocks (of those the surface opened) and
    the head train, so the blocks below run once per row (``thaw.frozen_prefix``), from
    this fit's own encoder, not the pretrained states ``prefix_source`` holds. What was
    open is open again afterwards (the saved model is the surface's tensors)."""
    from thaw.modeling import transformer_blocks

    blocks = transformer_blocks(state.model.encoder)
    state.settings["end_to_end_blocks"] = min(count or len(blocks), len(blocks))
    if count is None or count >= len(blocks):
        yield
        return
    inside = {id(p) for block in blocks[len(blocks) - count :] for p in block.parameters()}
    closed = [p for p in state.model.encoder.parameters() if p.requires_grad and id(p) not in inside]
    source, state.prefix_source = state.prefix_source, None
    try:
        for p in closed:
            p.requires_grad_(False)
        yield
    finally:
        for p in closed:
            p.requires_grad_(True)
        state.prefix_source = source
