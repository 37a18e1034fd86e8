"""The full rung: every backbone weight trained, layer-wise learning rates, cross-entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.rung_methods.phases import fine_tune
from thaw.rung_registry import FAR_DOMAIN, MANY_LABELS, MODERATE, Phase, RungMethod, register_rung

if TYPE_CHECKING:
    from thaw.config import LadderConfig


def open_everything(model, ladder: LadderConfig) -> tuple[str, str]:
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    return "full", "nothing"


FULL = register_rung(
    RungMethod(
        name="full",
        order=40,
        label="full fine-tuning",
        planned_in=frozenset({FAR_DOMAIN, MANY_LABELS, MODERATE}),
        first_in=frozenset({FAR_DOMAIN, MANY_LABELS}),
        open_surface=open_everything,
        learning_rate=lambda ladder: (ladder.finetune.full_learning_rate, ladder.finetune.layer_decay),
        loop=lambda ladder: ladder.finetune,
        phases=(Phase("fine_tune", fine_tune),),
    )
)
