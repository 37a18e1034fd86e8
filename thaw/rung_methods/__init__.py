"""thaw's own rungs, one module each, registered in ``thaw.rung_registry`` on import:
``frozen`` (a head on frozen features), ``fewshot`` (contrastive tuning, then a
logistic-regression head), ``peft`` (LoRA, IA3 or BitFit), ``partial`` (the top blocks)
and ``full`` (the whole backbone). ``phases`` holds the training steps they share."""

from thaw.rung_methods import fewshot, frozen, full, partial, peft

__all__ = ["fewshot", "frozen", "full", "partial", "peft"]
