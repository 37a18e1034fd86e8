"""The PEFT rung: LoRA (default) or IA3 adapters on frozen pretrained weights, or BitFit
(biases only); fine-tuned with cross-entropy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.rung_methods.phases import fine_tune
from thaw.rung_registry import MODERATE, Phase, RungMethod, register_rung

if TYPE_CHECKING:
    from thaw.config import LadderConfig


def open_adapter(model, ladder: LadderConfig) -> tuple[str, str]:
    """Wrap the encoder in the configured adapter (or open its biases for BitFit)."""
    p = ladder.peft
    if p.method == "bitfit":
        for name, param in model.encoder.named_parameters():
            param.requires_grad_(name.endswith(".bias"))
        return "bitfit", "all weights except biases"
    from peft import IA3Config, LoraConfig, get_peft_model

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
    model.encoder = get_peft_model(model.encoder, pc)  # opens only the adapter weights
    return p.method, "all pretrained weights (adapter weights added)"


PEFT = register_rung(
    RungMethod(
        name="peft",
        order=20,
        label="PEFT adapter",
        # not with few labels: a cross-entropy adapter on ~10 rows per class never beat the
        # frozen rung or the few-shot rung in the three runs on record (CLINC150 10-shot:
        # 0.9173 against few-shot 0.9182; two other intent sets at 10 per class: frozen
        # kept), and scored by cross-validation it cost ten more fits each time
        planned_in=frozenset({MODERATE}),
        first_in=frozenset({MODERATE}),
        open_surface=open_adapter,
        learning_rate=lambda ladder: (ladder.peft.learning_rate, 1.0),
        loop=lambda ladder: ladder.finetune,
        phases=(Phase("fine_tune", fine_tune),),
    )
)
