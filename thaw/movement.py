"""How far a rung moved the backbone: relative weight change per transformer block and
the similarity of its sentence representations to the frozen backbone's (linear CKA).

Seed document 002 asks, before unfreezing more, whether the backbone is moving too
aggressively: a block whose weights changed by more than ``aggressive_change`` of their
norm, or representations whose CKA with the frozen ones fell below ``aggressive_cka``,
is flagged (forgetting what the pretrained encoder knew is the usual price).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BackboneMovement:
    """Relative change ||W - W0|| / ||W0|| of the embeddings and of each block (bottom to
    top), linear CKA between frozen and adapted representations, and the verdict."""

    embeddings: float
    blocks: tuple[float, ...]
    cka: float
    aggressive: bool
    reason: str


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019) of two representations of
    the same rows: 1 for the same geometry up to rotation and scale, 0 for unrelated."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0


def relative_changes(base: dict, trained: dict, block_of) -> tuple[float, tuple[float, ...]]:
    """(embeddings, per-block) relative Frobenius change between two state dicts of the
    same encoder; ``block_of(name)`` gives a parameter's block index, None (embeddings)
    or -1 (left out)."""
    moved: dict[int | None, list[float]] = {}
    norms: dict[int | None, list[float]] = {}
    for name, w0 in base.items():
        key = block_of(name)
        if name not in trained or key == -1 or not np.issubdtype(np.asarray(w0).dtype, np.floating):
            continue
        moved.setdefault(key, []).append(float(np.sum((np.asarray(trained[name]) - np.asarray(w0)) ** 2)))
        norms.setdefault(key, []).append(float(np.sum(np.asarray(w0) ** 2)))
    ratio = {k: float(np.sqrt(sum(moved[k]) / max(sum(norms[k]), 1e-12))) for k in moved}
    blocks = tuple(ratio[k] for k in sorted(k for k in ratio if k is not None))
    return ratio.get(None, 0.0), blocks


def movement_verdict(
    embeddings: float, blocks: tuple[float, ...], cka: float, aggressive_change: float, aggressive_cka: float
) -> BackboneMovement:
    """Flag movement when any block changed by more than ``aggressive_change`` of its norm
    or the representations' CKA with the frozen ones fell below ``aggressive_cka``."""
    top = max((embeddings, *blocks))
    if cka < aggressive_cka:
        reason = f"representations moved far from the frozen backbone (CKA {cka:.2f} < {aggressive_cka})"
    elif top > aggressive_change:
        reason = f"weights changed by up to {top:.1%} of their norm (> {aggressive_change:.0%})"
    else:
        reason = f"moderate: weights changed by at most {top:.1%}, CKA {cka:.2f}"
    return BackboneMovement(embeddings, blocks, cka, cka < aggressive_cka or top > aggressive_change, reason)
