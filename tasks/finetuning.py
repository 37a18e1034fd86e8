"""Rungs of the adaptation ladder beyond the frozen one: peft, partial and full fine-tune
the backbone through one loop (``thaw.trainer``), initialised from the frozen rung's
head, checkpointed every epoch under ``<state>/checkpoints/<key>``.

A rung trains in the flow's process, or data-parallel in ``finetune.processes``
processes: ``launch`` starts this module under ``torch.distributed.run``; every process
runs ``fit_adapted_rung`` on its share of the batches and rank 0 writes the model and the
result the pipeline reads back::

    python -m torch.distributed.run --nproc_per_node N -m tasks.finetuning SPEC.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prefect import task

from tasks.evaluation import score_predictions
from tasks.frozen_rung import save_linear_head
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, write_text_atomically
from thaw.rungs import EpochRecord, RungDetails, TrainedRung


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
        changed = {
            n[len("encoder.") :]: p.detach().cpu().contiguous()
            for n, p in model.named_parameters()
            if p.requires_grad and n.startswith("encoder.")
        }
        save_file(changed, str(model_dir / "delta.safetensors"))


def fit_adapted_rung(
    rung: str,
    curated: DatasetVersion,
    labels: tuple[str, ...],
    frozen_dir: Path,
    cfg: ThawConfig,
    run_dir: Path,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainedRung:
    """Fine-tune ``rung`` (peft, partial or full) from the frozen head; resumable."""
    import torch
    from safetensors.numpy import load_file

    from thaw.adaptation import apply_surface, build_classifier, parameter_groups
    from thaw.distributed import init_from_environment, is_main_process
    from thaw.metrics import macro_f1
    from thaw.modeling import configure_threads, load_encoder, resolve_backbone, select_device
    from thaw.trainer import Checkpoint, predict_classes, train_classifier

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
    train, val = curated.read(cfg.root, "train"), curated.read(cfg.root, "validation")
    x_train, y_train, x_val, y_val = train.texts, np.asarray(train.labels), val.texts, np.asarray(val.labels)
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
    outcome = train_classifier(
        model,
        tokenizer,
        train_enc,
        np.array([index[y] for y in y_train]),
        val_enc,
        score,
        ladder.finetune,
        lr,
        groups,
        checkpoint,
        device,
        seed,
        on_epoch_end,
    )
    seconds = time.perf_counter() - started
    predictions = names[predict_classes(model, tokenizer, val_enc, ladder.finetune.batch_size * 2, device)]
    meta = {
        "rung": rung,
        "method": surface.method,
        "kind": "adapted_encoder",
        "backbone": json.loads(ref.to_json()),
        "pooling": cfg.backbone.pooling,
        "max_length": cfg.backbone.max_length,
        "best_epoch": outcome.best_epoch,
        "trainable_backbone_parameters": surface.trainable_backbone,
        "backbone_parameters": surface.total_backbone,
    }
    model_dir = run_dir / "models" / rung
    if is_main_process():
        save_adapted_model(model, surface, labels, meta, model_dir)
    metrics = score_predictions(y_val, predictions, labels, cfg)
    head_params = sum(p.numel() for p in model.head.parameters())
    details = RungDetails(
        method=surface.method,
        frozen=surface.frozen,
        trainable_fraction_of_backbone=surface.fraction,
        settings={"learning_rate": lr, "layer_decay": decay},
        history=tuple(EpochRecord(**h) for h in outcome.history),
        epochs_run=outcome.epochs_run,
        best_epoch=outcome.best_epoch,
        resumed_from_epoch=outcome.resumed_from_epoch,
        train_seconds=round(seconds, 1),
    )
    return TrainedRung(rung, model_dir, metrics, tuple(predictions), surface.trainable_backbone + head_params, details)


@task(name="train-adapted-rung")
def train_adapted_rung(
    rung: str, curated: DatasetVersion, labels: tuple[str, ...], frozen_dir: Path, cfg: ThawConfig, run_dir: Path
) -> TrainedRung:
    """Prefect task around ``fit_adapted_rung``: in this process, or data-parallel in
    ``finetune.processes`` processes (this module under torch.distributed.run)."""
    if cfg.training.ladder.finetune.processes == 1:
        return fit_adapted_rung(rung, curated, labels, frozen_dir, cfg, run_dir)
    return launch(rung, curated, labels, frozen_dir, cfg, run_dir)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    rung: str, curated: DatasetVersion, labels: tuple[str, ...], frozen_dir: Path, cfg: ThawConfig, run_dir: Path
) -> TrainedRung:
    """Train ``rung`` in ``finetune.processes`` processes on this machine; return rank 0's result."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec, result = run_dir / f"{rung}.launch.json", run_dir / f"{rung}.result.json"
    result.unlink(missing_ok=True)
    spec.write_text(
        json.dumps(
            {
                "rung": rung,
                "curated": dataclasses.asdict(curated),
                "labels": list(labels),
                "frozen_dir": str(frozen_dir),
                "config": cfg.model_dump(mode="json"),
                "run_dir": str(run_dir),
                "result": str(result),
            }
        ),
        encoding="utf-8",
    )
    n = cfg.training.ladder.finetune.processes
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(n),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "tasks.finetuning",
        str(spec),
    ]
    proc = subprocess.run(cmd, cwd=cfg.root, capture_output=True, text=True)
    if proc.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{rung} rung in {n} processes failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    trained = TrainedRung.from_dict(json.loads(result.read_text(encoding="utf-8")))
    return dataclasses.replace(trained, details=dataclasses.replace(trained.details, processes=n))


def main(spec_path: str) -> None:
    from thaw.distributed import barrier, is_main_process
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    curated = DatasetVersion.from_dict(spec["curated"])
    cfg = ThawConfig.model_validate(spec["config"])
    trained = fit_adapted_rung(
        spec["rung"], curated, tuple(spec["labels"]), Path(spec["frozen_dir"]), cfg, Path(spec["run_dir"])
    )
    if is_main_process():
        write_text_atomically(Path(spec["result"]), json.dumps(trained.to_dict()))
    barrier()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
