"""Rungs of the adaptation ladder beyond the frozen one, and the scratch baseline.

Rung 0 (scratch): TF-IDF word + character n-grams and logistic regression, C chosen on
validation: the yardstick that catches negative transfer. Rungs 2-4 (peft, partial,
full) fine-tune the backbone through one loop (``thaw.trainer``), initialised from the
frozen rung's head, checkpointed every epoch under ``<state>/checkpoints/<key>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from prefect import task

from tasks.evaluation import classification_metrics
from tasks.training import TrainedRung, read_split, save_linear_head
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig


def _texts_labels(curated: DatasetVersion, split: str, cfg: ThawConfig) -> tuple[list[str], np.ndarray]:
    frame = read_split(curated, split, cfg)
    return frame[cfg.data.text_column].tolist(), frame[cfg.data.label_column].to_numpy()


@task(name="train-scratch-baseline")
def train_scratch_baseline(curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig) -> TrainedRung:
    """TF-IDF (word + char) + logistic regression; no backbone involved."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from tasks.evaluation import macro_f1

    s = cfg.training.ladder.scratch
    x_train, y_train = _texts_labels(curated, "train", cfg)
    x_val, y_val = _texts_labels(curated, "validation", cfg)
    vectorizers = [TfidfVectorizer(ngram_range=s.word_ngrams, sublinear_tf=True, max_features=s.max_features),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=s.char_ngrams, sublinear_tf=True, max_features=s.max_features)]
    train_m = hstack([v.fit_transform(x_train) for v in vectorizers]).tocsr()
    val_m = hstack([v.transform(x_val) for v in vectorizers]).tocsr()
    best = None
    for c in cfg.training.head.c_grid:
        clf = LogisticRegression(C=c * 10, max_iter=cfg.training.head.max_iter, random_state=cfg.training.seed).fit(train_m, y_train)
        pred = clf.predict(val_m)
        score = macro_f1(y_val, pred, labels)
        if best is None or score > best[0]:
            best = (score, c * 10, pred)
    _, c, pred = best
    metrics = classification_metrics(y_val, pred, labels, cfg.training.confidence_level)
    params = int(train_m.shape[1] * len(labels))
    return TrainedRung("scratch", None, metrics, tuple(pred), params, {"C": c, "features": int(train_m.shape[1])})


def checkpoint_key(cfg: ThawConfig, rung: str, curated: DatasetVersion, backbone_revision: str) -> str:
    """Content key of a rung's training: config, data and backbone (a re-run resumes)."""
    data = ",".join(f"{s}:{f.md5}" for s, f in sorted(curated.files.items()))
    return hashlib.sha256(f"{cfg.digest()}|{rung}|{data}|{backbone_revision}".encode()).hexdigest()[:24]


def _learning_rate(rung: str, cfg: ThawConfig) -> tuple[float, float]:
    """(base rate, layer decay) of a rung."""
    ladder = cfg.training.ladder
    if rung == "peft":
        return ladder.peft.learning_rate, 1.0
    if rung == "partial":
        return ladder.finetune.partial_learning_rate, ladder.finetune.layer_decay
    return ladder.finetune.full_learning_rate, ladder.finetune.layer_decay


def save_adapted_model(model, surface, labels: tuple[str, ...], meta: dict, model_dir: Path) -> None:
    """Head + (PEFT adapter | changed backbone tensors) + model.json; never a pickle."""
    from safetensors.torch import save_file

    head = (model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy())
    save_linear_head(model_dir, head[0], head[1], labels, meta)
    if surface.method in ("lora", "ia3"):
        model.encoder.save_pretrained(model_dir / "adapter")
    else:
        changed = {n[len("encoder."):]: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                   if p.requires_grad and n.startswith("encoder.")}
        save_file(changed, str(model_dir / "delta.safetensors"))


def fit_adapted_rung(rung: str, curated: DatasetVersion, labels: tuple[str, ...], frozen_dir: Path, cfg: ThawConfig,
                     run_dir: Path, on_epoch_end: Callable[[int], None] | None = None) -> TrainedRung:
    """Fine-tune ``rung`` (peft, partial or full) from the frozen head; resumable."""
    import torch
    from safetensors.numpy import load_file

    from tasks.evaluation import macro_f1
    from thaw.adaptation import apply_surface, build_classifier, parameter_groups
    from thaw.modeling import configure_threads, load_encoder, resolve_backbone, select_device
    from thaw.trainer import Checkpoint, predict_classes, train_classifier

    from thaw.distributed import init_from_environment, is_main_process

    ladder, seed = cfg.training.ladder, cfg.training.seed
    configure_threads()
    device = select_device(ladder.finetune.device)
    if init_from_environment(device.type) and device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    ref, directory = resolve_backbone(cfg.backbone)
    tokenizer, encoder = load_encoder(directory, device)
    head = load_file(str(frozen_dir / "linear_head.safetensors"))  # LP-FT starts from the linear probe
    torch.manual_seed(seed)
    model = build_classifier(encoder, len(labels), cfg.backbone.pooling, (head["weight"], head["bias"])).to(device)
    surface = apply_surface(model, rung, ladder)
    if ladder.finetune.gradient_checkpointing and device.type == "cuda":
        model.encoder.gradient_checkpointing_enable()
    index = {label: i for i, label in enumerate(labels)}
    (x_train, y_train), (x_val, y_val) = _texts_labels(curated, "train", cfg), _texts_labels(curated, "validation", cfg)
    encode = lambda texts: dict(tokenizer(texts, truncation=True, max_length=cfg.backbone.max_length))  # noqa: E731
    train_enc, val_enc = encode(x_train), encode(x_val)
    names = np.asarray(labels)
    if ladder.metric == "accuracy":
        score = lambda pred: float((names[pred] == y_val).mean())  # noqa: E731
    else:
        score = lambda pred: macro_f1(y_val, names[pred], labels)  # noqa: E731
    lr, decay = _learning_rate(rung, cfg)
    groups = parameter_groups(model, lr, ladder.finetune.head_learning_rate, decay, ladder.finetune.weight_decay)
    checkpoint = Checkpoint(cfg.state_path / "checkpoints" / checkpoint_key(cfg, rung, curated, ref.revision))
    started = time.perf_counter()
    outcome = train_classifier(model, tokenizer, train_enc, np.array([index[y] for y in y_train]), val_enc, score,
                               ladder.finetune, lr, groups, checkpoint, device, seed, on_epoch_end)
    seconds = time.perf_counter() - started
    predictions = names[predict_classes(model, tokenizer, val_enc, ladder.finetune.batch_size * 2, device)]
    meta = {"rung": rung, "method": surface.method, "kind": "adapted_encoder", "backbone": json.loads(ref.to_json()),
            "pooling": cfg.backbone.pooling, "max_length": cfg.backbone.max_length, "best_epoch": outcome.best_epoch,
            "trainable_backbone_parameters": surface.trainable_backbone, "backbone_parameters": surface.total_backbone}
    model_dir = run_dir / "models" / rung
    if is_main_process():
        save_adapted_model(model, surface, labels, meta, model_dir)
    metrics = classification_metrics(y_val, predictions, labels, cfg.training.confidence_level)
    head_params = sum(p.numel() for p in model.head.parameters())
    details = {"method": surface.method, "frozen": surface.frozen, "trainable_fraction_of_backbone": surface.fraction,
               "epochs_run": outcome.epochs_run, "best_epoch": outcome.best_epoch, "resumed_from_epoch": outcome.resumed_from_epoch,
               "history": outcome.history, "train_seconds": round(seconds, 1), "learning_rate": lr, "layer_decay": decay}
    return TrainedRung(rung, model_dir, metrics, tuple(predictions), surface.trainable_backbone + head_params, details)


@task(name="train-adapted-rung")
def train_adapted_rung(rung: str, curated: DatasetVersion, labels: tuple[str, ...], frozen_dir: Path, cfg: ThawConfig, run_dir: Path) -> TrainedRung:
    """Prefect task around ``fit_adapted_rung``: in this process, or data-parallel in
    ``finetune.processes`` processes (``thaw.rung_worker`` under torch.distributed.run)."""
    if cfg.training.ladder.finetune.processes == 1:
        return fit_adapted_rung(rung, curated, labels, frozen_dir, cfg, run_dir)
    from thaw.rung_worker import launch

    return launch(rung, curated, labels, frozen_dir, cfg, run_dir)
