"""Dropout whose random mask costs less on a CPU, for the attention weights of
``thaw.packed``.

PyTorch's CPU dropout draws one random number per element (``bernoulli_``, about 7 ns
an element here). ``dropout`` draws 64 random bits at a time from the same generator
and reads them as four 16-bit lanes, so a draw decides four elements (all 64 bits:
``random_`` on an int64 leaves the sign bit 0 unless asked for the full range, and a
lane that is never negative would never drop). The probability of dropping
is ``p`` rounded to a multiple of 1/65,536 (0.1 drops with probability 0.100006), and
the draws come from ``torch``'s default generator, so a seed and a saved RNG state
replay them exactly (``thaw.trainer.Checkpoint``). On CUDA it is ``F.dropout``, whose
fused kernel is already cheap.

The encoder's own ``nn.Dropout`` modules are left as they are: swapped for this one, a
class-balanced contrastive step took 0.360 s against 0.375 (CLINC150 at 10 per class,
one thread, bf16, steps interleaved in one process), but pairs of whole few-shot fits
showed nothing beyond the host's drift, as an earlier swap had not (docs/benchmarks.md, "bf16 and
fp32 on one machine").
"""

from __future__ import annotations

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
