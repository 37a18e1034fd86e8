"""Rungs of the adaptation ladder beyond the frozen one: fewshot (contrastive tuning of the
encoder, then a logistic-regression head: the SetFit recipe), peft, partial and full.

Every fit goes through one loop (``thaw.trainer.train_loop``), starts from a linear
probe (LP-FT), is checkpointed every epoch under ``<state>/checkpoints/<key>`` and says
which rows it trains and is scored on (``AdaptedFit``): the held-out validation split,
one cross-validation fold, or train + validation for the final refit.

A fit runs in the flow's process, or data-parallel in ``finetune.processes`` processes:
``launch`` starts this module under ``torch.distributed.run``; every process runs
``fit_adapted_rung`` on its share of the batches and rank 0 writes the model and the
result the pipeline reads back::

    python -m torch.distributed.run --nproc_per_node N -m tasks.ladder.finetuning SPEC.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from tasks.evaluation.scoring import score_predictions
from tasks.ladder.frozen_rung import linear_probe_path, save_linear_head
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.content_cache import ContentCache, content_key
from thaw.datasets import DatasetVersion, Split, SplitRows, file_md5, write_text_atomically
from thaw.pii.masking import input_form
from thaw.rung_registry import rung_method
from thaw.rungs import EpochRecord, RungDetails, TrainedRung
from thaw.text_form import TEXT_FORM


@dataclass(frozen=True)
class AdaptedFit:
    """One fit of an adapted rung: the rows it trains on and is scored on, the linear head
    it starts from, and where the model goes (None: a cross-validation fold, not kept)."""

    rung: str
    train: SplitRows
    validation: SplitRows | None
    head: Path
    name: str  # "holdout", "refit", "cv-r0-f3": keys its checkpoint
    out_dir: Path | None
    epochs: int | None = None  # a fixed count (a refit has no validation to stop on)
    select_epoch: bool = True  # keep the epoch best on validation (False: the last; a fold's rows are for scoring only)
    measure_movement: bool = False
    # time.time() by which the fit plans its epochs to end (thaw.time_budget); None: unbounded.
    # Not part of the checkpoint key: a resumed fit keeps the epochs it had planned.
    deadline: float | None = None

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def from_dict(cls, data: dict) -> AdaptedFit:
        rows = lambda d: SplitRows(tuple(d["splits"]), tuple(d["positions"]) if d["positions"] else None)  # noqa: E731
        return cls(
            data["rung"],
            rows(data["train"]),
            rows(data["validation"]) if data["validation"] else None,
            Path(data["head"]),
            data["name"],
            Path(data["out_dir"]) if data["out_dir"] else None,
            data["epochs"],
            data["select_epoch"],
            data["measure_movement"],
            data.get("deadline"),
        )


def holdout_fit(rung: str, run_dir: Path, deadline: float | None = None) -> AdaptedFit:
    """Train on the train split from the frozen rung's linear probe, keep the epoch best on
    validation, save under ``run_dir/models/<rung>``, measure backbone movement; plan
    only the epochs that end by ``deadline`` (``time.time()``; None: all)."""
    head = linear_probe_path(run_dir)
    return AdaptedFit(
        rung,
        SplitRows(("train",)),
        SplitRows(("validation",)),
        head,
        "holdout",
        artifacts.rung_model_dir(run_dir, rung),
        measure_movement=True,
        deadline=deadline,
    )


FIT_LIBRARIES = ("torch", "transformers", "peft")


def checkpoint_key(cfg: ThawConfig, fit: AdaptedFit, curated: DatasetVersion, backbone_revision: str, precision: str):
    """Content key of a fit (a re-run resumes it): the rows it trains on, the linear probe
    it starts from, the backbone, the rung and the ladder settings that shape a fit, the
    libraries and the precision; not the tracking URI, the gate or the rung list."""
    ladder = cfg.training.ladder
    settings = {
        "rung": fit.rung,
        "fit": fit.name,
        "rows": [fit.train.splits, fit.train.positions, fit.epochs, fit.select_epoch],
        "data": {s: f.md5 for s, f in sorted(curated.files.items())},
        "probe": file_md5(fit.head),
        "backbone": [backbone_revision, cfg.backbone.pooling, cfg.backbone.max_length],
        "text_form": TEXT_FORM,
        "ladder": ladder.model_dump(
            mode="json",
            include={"finetune", "fewshot", "peft", "metric"},
            exclude={"finetune": {"checkpoint_seconds"}},  # when to save does not shape the fit
        ),
        "seed": cfg.training.seed,
    }
    return content_key("checkpoint", settings, FIT_LIBRARIES, precision)


PREFIX_LIBRARIES = ("torch", "transformers")


def split_prefix(
    split: str, curated: DatasetVersion, cfg: ThawConfig, model, tokenizer, device, count: int, revision: str
):
    """The frozen states (``thaw.frozen_prefix``) of every row of ``split`` after the
    ``count`` lowest blocks: an entry of the ``prefix`` content cache, keyed by the backbone
    revision, the split file's md5, max length, text form, block count, libraries and
    precision. The hold-out fit, its refit (train + validation) and every cross-validation
    fold take their rows from the same entries instead of running the blocks again."""
    from thaw.frozen_prefix import FrozenPrefix
    from thaw.modeling import encode_texts, numeric_precision

    settings = {
        "backbone": [revision, cfg.backbone.max_length],
        "data": curated.files[split].md5,
        "blocks": count,
        "text_form": TEXT_FORM,
    }
    cache = ContentCache(cfg.state_path / "cache" / "prefix")
    key = content_key("prefix", settings, PREFIX_LIBRARIES, numeric_precision(device))
    if (entry := cache.get(key)) is not None:
        try:
            return FrozenPrefix.load(entry, model.encoder, device, count)
        except ValueError as exc:  # damaged: replaced by the states computed below
            print(f"  {entry}: {exc}; computed again")
            shutil.rmtree(entry, ignore_errors=True)
    rows = curated.read(cfg.root, split)
    encoded = encode_texts(tokenizer, rows.texts, cfg.backbone.max_length)
    prefix = FrozenPrefix.compute(model, tokenizer, encoded, device, cfg.backbone.batch_size, count)
    with cache.put(key) as staging:
        prefix.save(staging)
    return prefix


def rows_prefix(rows: SplitRows, **split_args):
    """``split_prefix`` of the rows a fit uses: its splits pooled in order, then its positions."""
    from thaw.frozen_prefix import FrozenPrefix

    pool = FrozenPrefix.concat([split_prefix(split, **split_args) for split in rows.splits])
    return pool if rows.positions is None else pool.take(rows.positions)


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


def _prepare(fit: AdaptedFit, labels: tuple[str, ...], cfg: ThawConfig, threads: int | None = None):
    """Device, backbone, tokenizer and the classifier with the rung's trainable surface;
    ``threads`` intra-op threads (None: every usable core)."""
    import torch
    from safetensors.numpy import load_file

    from thaw.adaptation import apply_surface, build_classifier, enable_checkpointing
    from thaw.distributed import init_from_environment
    from thaw.modeling import configure_threads, load_encoder, resolve_backbone, select_device

    ladder = cfg.training.ladder
    configure_threads(threads)
    device = select_device(ladder.finetune.device)
    if init_from_environment(device.type) and device.type == "cuda":  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    ref, directory = resolve_backbone(cfg.backbone)
    tokenizer, encoder = load_encoder(directory, device)
    base = (
        {k: v.detach().cpu().numpy().copy() for k, v in encoder.state_dict().items()} if fit.measure_movement else None
    )
    head = load_file(str(fit.head))  # LP-FT: start from the linear probe
    torch.manual_seed(cfg.training.seed)
    model = build_classifier(encoder, len(labels), cfg.backbone.pooling, (head["weight"], head["bias"])).to(device)
    surface = apply_surface(model, rung_method(fit.rung), ladder)
    if ladder.finetune.gradient_checkpointing and device.type == "cuda":
        enable_checkpointing(model.encoder)
    return device, ref, tokenizer, model, surface, base


def fit_adapted_rung(
    fit: AdaptedFit,
    curated: DatasetVersion,
    labels: tuple[str, ...],
    cfg: ThawConfig,
    on_epoch_end: Callable[[int], None] | None = None,
    threads: Callable[[], int] | None = None,
) -> TrainedRung:
    """Train ``fit.rung`` on ``fit.train`` (resumable), score it on ``fit.validation``,
    save it to ``fit.out_dir``; optionally measure how far it moved the backbone.
    ``threads``: the intra-op threads the fit may use, asked again after every epoch
    (fits sharing the cores: ``tasks.ladder.fold_pool``); None: every usable core."""
    from thaw.distributed import is_main_process
    from thaw.trainer import predict_log_probabilities

    device, ref, tokenizer, model, surface, base = _prepare(fit, labels, cfg, threads() if threads else None)
    if threads is not None:
        on_epoch_end = _also_rethread(on_epoch_end, threads)
    state = _fit_state(fit, curated, labels, cfg, (device, ref, tokenizer, model), on_epoch_end)
    # as configured: phases may add rows (label names) and change the rate (end to end)
    train, rates = state.train, {"learning_rate": state.learning_rate, "layer_decay": state.layer_decay}
    started = time.perf_counter()
    for phase in rung_method(fit.rung).phases:
        phase.run(state)
    seconds = time.perf_counter() - started
    val, predictions, log_probabilities = state.validation, np.asarray([]), None
    if val:
        replayed = state.prefixes[1]  # the validation rows' frozen-block states, when a phase replayed them
        log_probabilities = predict_log_probabilities(model, tokenizer, state.validation_encoded, 64, device, replayed)
        predictions = np.asarray(labels)[log_probabilities.argmax(1)]
    movement = _movement(model, base, tokenizer, val or train, cfg, device) if base is not None else None
    if fit.out_dir is not None and is_main_process():
        save_adapted_model(model, surface, labels, _saved_meta(fit, cfg, ref, surface, state), fit.out_dir)
    metrics = score_predictions(val.labels, predictions, labels, cfg) if val else {}
    head_params = sum(p.numel() for p in model.head.parameters())
    return TrainedRung(
        fit.rung,
        fit.out_dir,
        metrics,
        tuple(predictions),
        surface.trainable_backbone + head_params,
        _rung_details(fit, cfg, surface, state, rates, seconds, movement),
        # a fold's (no model kept) for its log-loss; a kept model's validation needs none
        validation_log_probabilities=log_probabilities if fit.out_dir is None else None,
    )


def _fit_state(
    fit: AdaptedFit, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, prepared, on_epoch_end
):
    """The fit's rows read and encoded, its learning rate, loop and checkpoint, and where
    its phases find the frozen blocks' states of its rows (``rows_prefix``, cached per
    rows and backbone)."""
    from thaw.modeling import encode_texts, numeric_precision
    from thaw.rung_methods.phases import FitState

    device, ref, tokenizer, model = prepared
    ladder, method = cfg.training.ladder, rung_method(fit.rung)
    train = fit.train.read(curated, cfg.root)
    val = fit.validation.read(curated, cfg.root) if fit.validation else None
    encode = lambda texts: encode_texts(tokenizer, texts, cfg.backbone.max_length)  # noqa: E731
    lr, decay = method.learning_rate(ladder)
    key = checkpoint_key(cfg, fit, curated, ref.revision, numeric_precision(device))
    state = FitState(
        model,
        tokenizer,
        device,
        cfg,
        labels,
        train,
        val,
        encode(train.texts),
        encode(val.texts) if val else None,
        lr,
        decay,
        method.loop(ladder),
        cfg.state_path / "checkpoints" / key,
        fit.select_epoch,
        on_epoch_end,
        fit.deadline,
        epochs=fit.epochs,
    )

    def prefix_source(count: int, which: str):
        args = {"curated": curated, "cfg": cfg, "model": model, "tokenizer": tokenizer, "device": device}
        return rows_prefix(
            fit.train if which == "train" else fit.validation, count=count, revision=ref.revision, **args
        )

    state.prefix_source = prefix_source
    return state


def _saved_meta(fit: AdaptedFit, cfg: ThawConfig, ref, surface, state) -> dict:
    """``model.json`` of a kept model: what it is, what it reads and what it trained on."""
    return {
        "rung": fit.rung,
        "method": surface.method,
        "kind": "adapted_encoder",
        "backbone": json.loads(ref.to_json()),
        "pooling": cfg.backbone.pooling,
        "max_length": cfg.backbone.max_length,
        "input_form": input_form(cfg.curation.pii, cfg.data.max_text_chars),
        "best_epoch": state.outcome.best_epoch + 1,
        "trainable_backbone_parameters": surface.trainable_backbone,
        "backbone_parameters": surface.total_backbone,
        "trained_on": list(fit.train.splits),
    }


def _rung_details(
    fit: AdaptedFit, cfg: ThawConfig, surface, state, rates: dict, seconds: float, movement
) -> RungDetails:
    """The fit as the transfer note and the run record it: its settings (``rates``: the
    learning rate and layer decay it started with), epochs and time."""
    outcome, ladder = state.outcome, cfg.training.ladder
    return RungDetails(
        method=rung_method(fit.rung).describe(surface.method, ladder),
        frozen=surface.frozen,
        trainable_fraction_of_backbone=surface.fraction,
        settings={**rates, "epochs": state.loop.epochs, **state.settings},
        history=tuple(EpochRecord(h["epoch"] + 1, h["train_loss"], h["validation_metric"]) for h in outcome.history),
        epochs_run=outcome.epochs_run,
        epochs_within_budget=outcome.planned_epochs if outcome.planned_epochs < state.loop.epochs else None,
        best_epoch=outcome.best_epoch + 1,
        resumed_from_epoch=outcome.resumed_from_epoch + 1 if outcome.resumed_from_epoch is not None else None,
        train_seconds=round(seconds, 1),
        step_seconds=round(state.step_seconds, 1),
        training_gflop=float(f"{state.training_flops / 1e9:.4g}"),
        movement=movement,
        trained_on=fit.train.splits,
    )


def _also_rethread(on_epoch_end: Callable[[int], None] | None, threads: Callable[[], int]) -> Callable[[int], None]:
    from thaw.modeling import configure_threads

    def after_epoch(epoch: int) -> None:
        configure_threads(threads())
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    return after_epoch


def _movement(model, base: dict, tokenizer, sample: Split, cfg: ThawConfig, device):
    """Relative weight change per block and CKA of the representations against the frozen
    backbone's, on up to 512 rows."""
    import copy

    from thaw.adaptation import block_index
    from thaw.modeling import embed_texts, load_encoder, resolve_backbone
    from thaw.movement import linear_cka, movement_verdict, relative_changes

    encoder = model.encoder
    if hasattr(encoder, "merge_and_unload"):  # LoRA / IA3: the weights the adapter amounts to
        encoder = copy.deepcopy(encoder).merge_and_unload()
    trained = {k: v.detach().cpu().numpy() for k, v in encoder.state_dict().items()}
    embeddings, blocks = relative_changes(base, trained, block_index)
    texts = sample.texts[:512]
    _, frozen = load_encoder(resolve_backbone(cfg.backbone)[1], device)
    a = embed_texts(texts, tokenizer, frozen, cfg.backbone, device)
    b = embed_texts(texts, tokenizer, encoder, cfg.backbone, device)
    ladder = cfg.training.ladder
    return movement_verdict(embeddings, blocks, linear_cka(a, b), ladder.aggressive_change, ladder.aggressive_cka)


@task(name="train-adapted-rung")
def train_adapted_rung(
    fit: AdaptedFit, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig
) -> TrainedRung:
    """Prefect task around ``fit_adapted_rung``: in this process, or data-parallel in
    ``finetune.processes`` processes (this module under torch.distributed.run)."""
    if cfg.training.ladder.finetune.processes == 1:
        return fit_adapted_rung(fit, curated, labels, cfg)
    return launch(fit, curated, labels, cfg)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fit: AdaptedFit, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig) -> TrainedRung:
    """Run ``fit`` in ``finetune.processes`` processes on this machine; return rank 0's result."""
    work = cfg.state_path / "launch"
    work.mkdir(parents=True, exist_ok=True)
    n = cfg.training.ladder.finetune.processes
    # the spec, rank 0's result and the launcher's per-rank log directory (which
    # torch.distributed.run would otherwise make in /tmp and keep) last as long as the launch
    with tempfile.TemporaryDirectory(prefix=f"{fit.rung}-{fit.name}-", dir=work) as scratch:
        spec, result = Path(scratch) / "spec.json", Path(scratch) / "result.json"
        body = {
            "fit": fit.to_dict(),
            "curated": dataclasses.asdict(curated),
            "labels": list(labels),
            "config": cfg.model_dump(mode="json"),
            "result": str(result),
        }
        write_text_atomically(spec, json.dumps(body))
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
            "--log-dir",
            str(Path(scratch) / "logs"),
            "-m",
            "tasks.ladder.finetuning",
            str(spec),
        ]
        proc = subprocess.run(cmd, cwd=cfg.root, capture_output=True, text=True)
        if proc.returncode != 0 or not result.is_file():
            failed = f"{fit.rung} rung in {n} processes failed (exit {proc.returncode})"
            raise RuntimeError(f"{failed}:\n{proc.stderr[-4000:]}")
        trained = TrainedRung.from_dict(json.loads(result.read_text(encoding="utf-8")))
    return dataclasses.replace(trained, details=dataclasses.replace(trained.details, processes=n))


def main(spec_path: str) -> None:
    from thaw.distributed import barrier, is_main_process
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    cfg = ThawConfig.model_validate(spec["config"])
    fit = AdaptedFit.from_dict(spec["fit"])
    trained = fit_adapted_rung(fit, DatasetVersion.from_dict(spec["curated"]), tuple(spec["labels"]), cfg)
    if is_main_process():
        write_text_atomically(Path(spec["result"]), json.dumps(trained.to_dict()))
    barrier()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
