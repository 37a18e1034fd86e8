"""Adaptation surfaces: the classifier every adapted rung trains, and at what rate.

``build_classifier`` gives the backbone plus a linear head on the same pooled, normalised
embedding the frozen rung uses, so a frozen head initialises every deeper rung (linear
probe, then fine-tune). ``apply_surface`` freezes the model and lets the rung open what it
trains (each rung's own ``open_surface``, in ``thaw.rung_methods``);
``parameter_groups`` gives layer-wise learning rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thaw.modeling import base_model, pool, transformer_blocks

if TYPE_CHECKING:
    from thaw.config import LadderConfig
    from thaw.rung_registry import RungMethod


def build_classifier(encoder, num_labels: int, pooling: str, head: tuple[np.ndarray, np.ndarray] | None = None):
    """The backbone with a linear head; ``head`` (weight, bias) initialises it (LP-FT)."""
    import torch

    from thaw.packed import packable, packed_embed, worth_packing

    class _EncoderClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)
            self.pooling = pooling
            self.packs = packable(encoder)

        def can_pack(self) -> bool:
            """The blocks are BERT-shaped (thaw.packed) and the library need not run
            them (gradient checkpointing)."""
            return self.packs and not _checkpointing(base_model(self.encoder))

        def embed(self, **features) -> torch.Tensor:
            # the real tokens only when the batch is padded enough to pay for it
            if self.can_pack() and worth_packing(features["attention_mask"]):
                return packed_embed(self.encoder, features, self.pooling)
            hidden = self.encoder(**features).last_hidden_state
            return pool(hidden, features["attention_mask"], self.pooling)

        def forward(self, **features) -> torch.Tensor:
            return self.head(self.embed(**features))

    model = _EncoderClassifier()
    if head is not None:
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(head[0]))
            model.head.bias.copy_(torch.from_numpy(head[1]).clamp(min=-30))
    return model


# transformers 5 calls gradient checkpointing activation checkpointing, and warns on the
# older names; earlier versions have only those
def _checkpointing(model) -> bool:
    """Whether the library recomputes ``model``'s activations in backward."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def enable_checkpointing(model) -> None:
    """Have the library recompute ``model``'s activations in backward (memory for time)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


@dataclass(frozen=True)
class Surface:
    """What a rung trains: description, trainable and total backbone parameter counts."""

    rung: str
    method: str
    trainable_backbone: int
    total_backbone: int
    frozen: str

    @property
    def fraction(self) -> float:
        return self.trainable_backbone / max(self.total_backbone, 1)


def apply_surface(model, rung: RungMethod, ladder: LadderConfig) -> Surface:
    """Freeze ``model.encoder`` and let ``rung`` open what it trains; the head always trains."""
    if rung.open_surface is None:
        raise ValueError(f"rung {rung.name!r} trains no encoder weights")
    total = sum(p.numel() for p in model.encoder.parameters())
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    method, frozen = rung.open_surface(model, ladder)
    trainable = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return Surface(rung.name, method, trainable, total, frozen)


def block_index(name: str) -> int | None:
    """The transformer block a parameter name belongs to (``...layer.3....`` -> 3), None
    for the embeddings, -1 for what thaw never uses (the pooler)."""
    import re

    if "pooler" in name:
        return -1
    found = re.search(r"\blayers?\.(\d+)\.", name)
    return int(found.group(1)) if found else None


def parameter_groups(model, base_lr: float, head_lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: head at ``head_lr``; block i from the top at base_lr * decay**i;
    embeddings lowest; no weight decay on biases and LayerNorm weights."""
    encoder = model.encoder
    blocks = transformer_blocks(base_model(encoder))
    depth_of = {}
    for depth, block in enumerate(reversed(blocks)):
        for p in block.parameters():
            depth_of[id(p)] = depth
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head."):
            lr = head_lr
        else:
            lr = base_lr * layer_decay ** depth_of.get(id(p), len(blocks))
        wd = 0.0 if p.ndim == 1 else weight_decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def training_flops_per_token(encoder, replayed_blocks: int = 0) -> int:
    """Matmul FLOPs one real token costs in a training step of ``encoder`` with its
    current ``requires_grad`` surface, counting its non-embedding weights (attention's
    length-squared term left out, as short texts make it small): 2 per weight forward;
    backward, 2 per weight from the lowest block that trains up (the gradient of the
    activations) and 2 per trainable weight (the gradient of the weights). A fully
    trained encoder costs the usual 6 per weight; LoRA adapters on every block about 4.
    ``replayed_blocks``: the lowest blocks a step does not run (``thaw.frozen_prefix``)."""
    blocks = [(block_index(n), p) for n, p in encoder.named_parameters() if "embeddings" not in n]
    blocks = [(b, p) for b, p in blocks if b != -1]  # the pooler never runs
    trained = [b for b, p in blocks if p.requires_grad and b is not None]
    lowest = min(trained) if trained else None
    forward = sum(p.numel() for b, p in blocks if b is None or b >= replayed_blocks)
    through = sum(p.numel() for b, p in blocks if lowest is not None and (b is None or b >= lowest))
    weights = sum(p.numel() for _, p in blocks if p.requires_grad)
    return 2 * forward + 2 * through + 2 * weights
