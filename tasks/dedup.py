"""Deduplication: exact (normalised text), label conflicts, near duplicates (MinHash LSH).

All functions are pure over lists/frames and return which rows to drop and why, so the
caller can count every removal.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from thaw.config import DedupConfig


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the key for exact duplicates."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Removal:
    """Row positions to drop and the reason for each group."""

    positions: tuple[int, ...]
    reason: str


def resolve_label_conflicts(
    frame: pd.DataFrame, policy: Literal["majority", "drop"]
) -> tuple[list[Removal], int]:
    """Rows whose normalised text carries more than one label, resolved by ``policy``.

    ``majority`` keeps the rows with the most frequent label (a tie drops them all);
    ``drop`` drops every row of a conflicting text. Returns removals and the number of
    conflicting texts.
    """
    keys = frame["text"].map(normalize_text)
    labels_by_key: dict[str, Counter] = defaultdict(Counter)
    for key, label in zip(keys, frame["label"]):
        labels_by_key[key][label] += 1
    conflicted = {k: c for k, c in labels_by_key.items() if len(c) > 1}
    drop: list[int] = []
    for pos, (key, label) in enumerate(zip(keys, frame["label"])):
        counts = conflicted.get(key)
        if counts is None:
            continue
        (top, n_top), (_, n_second) = counts.most_common(2)
        if policy == "drop" or n_top == n_second or label != top:
            drop.append(pos)
    reason = f"label_conflict_{policy}"
    return ([Removal(tuple(drop), reason)] if drop else []), len(conflicted)


def exact_duplicate_positions(texts: Sequence[str], seen: set[str] | None = None) -> list[int]:
    """Positions whose normalised text already occurred earlier (or is in ``seen``)."""
    seen = set() if seen is None else set(seen)
    dup = []
    for pos, text in enumerate(texts):
        key = normalize_text(text)
        if key in seen:
            dup.append(pos)
        else:
            seen.add(key)
    return dup


def _shingles(text: str, size: int) -> list[bytes]:
    norm = normalize_text(text)
    if len(norm) <= size:
        return [norm.encode()]
    return list({norm[i:i + size].encode() for i in range(len(norm) - size + 1)})


def minhash_signatures(texts: Sequence[str], cfg: DedupConfig) -> list:
    """One datasketch MinHash per text over character shingles (seeded: reproducible)."""
    from datasketch import MinHash

    # One set of permutations for all signatures: datasketch would otherwise draw the
    # same seeded permutations again for every text.
    template = MinHash(num_perm=cfg.num_perm, seed=1)
    out = []
    for text in texts:
        mh = MinHash(num_perm=cfg.num_perm, seed=1, permutations=template.permutations, scheme=template.scheme)
        mh.update_batch(_shingles(text, cfg.shingle_size))
        out.append(mh)
    return out


def signatures_from_hashvalues(rows, cfg: DedupConfig) -> list:
    """MinHash objects from stored hash values (as computed elsewhere, e.g. on Dask workers)."""
    from datasketch import MinHash

    template = MinHash(num_perm=cfg.num_perm, seed=1)
    return [MinHash(num_perm=cfg.num_perm, seed=1, hashvalues=row, permutations=template.permutations,
                    scheme=template.scheme) for row in rows]


def near_duplicate_positions(
    texts: Sequence[str], cfg: DedupConfig, reference: Sequence[str] = (), signer=minhash_signatures,
) -> list[int]:
    """Positions in ``texts`` that are near duplicates of an earlier text or of ``reference``.

    Candidates come from MinHash LSH; a pair counts when the estimated Jaccard
    similarity of the shingle sets is at least ``cfg.threshold``. ``signer`` computes
    the signatures (here, or on a cluster).
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    kept: dict[tuple[str, int], object] = {}
    for i, mh in enumerate(signer(list(reference), cfg)):
        kept[("ref", i)] = mh
        lsh.insert(("ref", i), mh)
    dup = []
    for pos, mh in enumerate(signer(list(texts), cfg)):
        if any(mh.jaccard(kept[key]) >= cfg.threshold for key in lsh.query(mh)):
            dup.append(pos)
            continue
        kept[("own", pos)] = mh
        lsh.insert(("own", pos), mh)
    return dup


def drop_positions(frame: pd.DataFrame, positions: Sequence[int]) -> pd.DataFrame:
    """``frame`` without the rows at ``positions``, index reset."""
    if not len(positions):
        return frame.reset_index(drop=True)
    mask = np.ones(len(frame), dtype=bool)
    mask[list(positions)] = False
    return frame[mask].reset_index(drop=True)
