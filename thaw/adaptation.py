"""Adaptation surfaces: what each rung of the ladder makes trainable, and at what rate.

``build_classifier`` gives the backbone plus a linear head on the same pooled, normalised
embedding the frozen rung uses, so a frozen head initialises every deeper rung
(linear probe, then fine-tune). ``apply_surface`` freezes the model and opens exactly
the rung's parameters; ``parameter_groups`` gives layer-wise learning rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thaw.modeling import pool

if TYPE_CHECKING:
    from thaw.config import LadderConfig


def build_classifier(encoder, num_labels: int, pooling: str, head: tuple[np.ndarray, np.ndarray] | None = None):
    """The backbone with a linear head; ``head`` (weight, bias) initialises it (LP-FT)."""
    import torch

    class _EncoderClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)
            self.pooling = pooling

        def embed(self, **features) -> torch.Tensor:
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


def transformer_blocks(encoder) -> list:
    """The encoder's list of transformer blocks (BERT, RoBERTa, MiniLM, DistilBERT ...)."""
    import torch

    n = encoder.config.num_hidden_layers
    for module in encoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return list(module)
    raise ValueError(f"cannot find {n} transformer blocks in {type(encoder).__name__}")


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


def _wrap_peft(model, cfg: LadderConfig) -> None:
    from peft import IA3Config, LoraConfig, get_peft_model

    p = cfg.peft
    if p.method == "lora":
        pc = LoraConfig(
            r=p.lora_r,
            lora_alpha=p.lora_alpha,
            lora_dropout=p.lora_dropout,
            target_modules=list(p.target_modules),
            bias="none",
        )
    else:
        pc = IA3Config(target_modules=list(p.ia3_target_modules), feedforward_modules=list(p.ia3_feedforward_modules))
    model.encoder = get_peft_model(model.encoder, pc)


def apply_surface(model, rung: str, cfg: LadderConfig) -> Surface:
    """Freeze ``model.encoder`` and open what ``rung`` trains; the head is always trained."""
    total = sum(p.numel() for p in model.encoder.parameters())
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    method, frozen = rung, "nothing"
    if rung == "peft" and cfg.peft.method in ("lora", "ia3"):
        _wrap_peft(model, cfg)  # get_peft_model opens only the adapter weights
        method, frozen = cfg.peft.method, "all pretrained weights (adapter weights added)"
    elif rung == "peft":
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
        method, frozen = "bitfit", "all weights except biases"
    elif rung == "partial":
        blocks = transformer_blocks(model.encoder)
        for block in blocks[-cfg.finetune.unfreeze_top_k :]:
            for p in block.parameters():
                p.requires_grad_(True)
        frozen = f"embeddings and the lower {len(blocks) - cfg.finetune.unfreeze_top_k} of {len(blocks)} blocks"
    elif rung == "full":
        for p in model.encoder.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"unknown rung {rung!r}")
    trainable = sum(p.numel() for n, p in model.encoder.named_parameters() if p.requires_grad)
    for p in model.head.parameters():
        p.requires_grad_(True)
    return Surface(rung, method, trainable, total, frozen)


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
    blocks = transformer_blocks(encoder.get_base_model() if hasattr(encoder, "get_base_model") else encoder)
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
