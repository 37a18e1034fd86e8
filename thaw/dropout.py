"""Dropout whose random mask costs less on a CPU.

PyTorch's CPU dropout draws one random number per element (``bernoulli_``, about 7 ns
an element here), and a fine-tuning step of a small encoder on short texts drops out
many elements: after the embeddings, in every block's attention weights and twice more
per block. ``dropout`` draws 64 random bits at a time from the same generator and reads
them as four 16-bit lanes, so a draw decides four elements. The probability of dropping
is ``p`` rounded to a multiple of 1/65,536 (0.1 drops with probability 0.100006), and
the draws come from ``torch``'s default generator, so a seed and a saved RNG state
replay them exactly (``thaw.trainer.Checkpoint``). On CUDA it is ``F.dropout``, whose
fused kernel is already cheap.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_LANES = 65_536  # values a 16-bit lane takes


def keep_mask(shape: tuple[int, ...], p: float, device) -> torch.Tensor:
    """A boolean mask of ``shape``, each element False with probability ``p`` (rounded to
    a multiple of 1/65,536), drawn four elements to a 64-bit draw."""
    import math

    import torch

    count = math.prod(shape)
    bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)  # all 64 bits
    lanes = bits.view(torch.int16)[:count].view(shape)  # each uniform on [-32768, 32767]
    return lanes >= round(p * _LANES) - _LANES // 2


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)``, its mask from ``keep_mask`` on a CPU."""
    import torch

    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return torch.nn.functional.dropout(x, p, training=True)
    return x.masked_fill(~keep_mask(tuple(x.shape), p, x.device), 0).mul_(1.0 / (1.0 - p))


@cache
def _module_class():
    import torch

    class CheapDropout(torch.nn.Dropout):
        """``torch.nn.Dropout`` through ``thaw.dropout.dropout``."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.inplace:
                return super().forward(x)
            return dropout(x, self.p, self.training)

    return CheapDropout


def use_cheap_dropout(model) -> int:
    """Swap every ``torch.nn.Dropout`` in ``model`` for one drawing its mask with
    ``keep_mask`` (same ``p``, same behaviour in eval mode); the number swapped. Weights
    and state dicts are untouched: dropout holds none."""
    import torch

    cheap = _module_class()
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                replacement = cheap(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    return swapped
