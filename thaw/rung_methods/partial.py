"""The partial rung: the top ``finetune.unfreeze_top_k`` transformer blocks unfrozen,
layer-wise learning rates, fine-tuned with cross-entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.rung_methods.phases import fine_tune
from thaw.rung_registry import FAR_DOMAIN, MANY_LABELS, MODERATE, Phase, RungMethod, register_rung

if TYPE_CHECKING:
    from thaw.config import LadderConfig


def open_top_blocks(model, ladder: LadderConfig) -> tuple[str, str]:
    from thaw.modeling import transformer_blocks

    blocks = transformer_blocks(model.encoder)
    k = ladder.finetune.unfreeze_top_k
    for block in blocks[-k:]:
        for p in block.parameters():
            p.requires_grad_(True)
    return "partial", f"embeddings and the lower {len(blocks) - k} of {len(blocks)} blocks"


PARTIAL = register_rung(
    RungMethod(
        name="partial",
        order=30,
        label="partial unfreeze",
        planned_in=frozenset({FAR_DOMAIN, MANY_LABELS, MODERATE}),
        open_surface=open_top_blocks,
        learning_rate=lambda ladder: (ladder.finetune.partial_learning_rate, ladder.finetune.layer_decay),
        loop=lambda ladder: ladder.finetune,
        phases=(Phase("fine_tune", fine_tune),),
    )
)
