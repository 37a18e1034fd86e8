"""The few-shot rung, the SetFit recipe: ``train_embeddings`` (supervised contrastive
tuning of the encoder on class-balanced batches, through LoRA or the whole encoder),
``train_classifier`` (a logistic-regression head on the tuned embeddings), then
``train_end_to_end`` (cross-entropy on encoder and head together, from that head: SetFit's
end-to-end step); before them, ``add_label_names`` gives each class whose label reads as
words that label as a training row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thaw.rung_methods.full import open_everything
from thaw.rung_methods.peft import open_adapter
from thaw.rung_methods.phases import add_label_names, train_classifier, train_embeddings, train_end_to_end
from thaw.rung_registry import FEW_LABELS, Phase, RungMethod, register_rung

if TYPE_CHECKING:
    from thaw.config import LadderConfig


def open_for_contrastive(model, ladder: LadderConfig) -> tuple[str, str]:
    """Tune through the PEFT rung's adapter or the whole encoder (``fewshot.surface``);
    the whole encoder but its word embeddings unless ``fewshot.train_word_embeddings``."""
    if ladder.fewshot.surface == "lora":
        return open_adapter(model, ladder)
    method, frozen = open_everything(model, ladder)
    if ladder.fewshot.train_word_embeddings:
        return method, frozen
    model.encoder.get_input_embeddings().weight.requires_grad_(False)
    return "full but the word embeddings", "the word embeddings"


FEWSHOT = register_rung(
    RungMethod(
        name="fewshot",
        order=10,
        label="few-shot contrastive",
        planned_in=frozenset({FEW_LABELS}),
        first_in=frozenset({FEW_LABELS}),
        open_surface=open_for_contrastive,
        learning_rate=lambda ladder: (ladder.fewshot.learning_rate, 1.0),
        loop=lambda ladder: ladder.fewshot.loop(ladder.finetune),
        phases=(
            Phase("add_label_names", add_label_names),
            Phase("train_embeddings", train_embeddings),
            Phase("train_classifier", train_classifier),
            Phase("train_end_to_end", train_end_to_end),
        ),
        describe=lambda method, ladder: (
            f"contrastive pairs + logistic regression{', then end to end' if ladder.fewshot.end_to_end_epochs else ''}"
            f", {method}"
        ),
    )
)
