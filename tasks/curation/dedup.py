"""Deduplication: exact (normalised text), label conflicts, near duplicates (MinHash LSH).

All functions are pure over lists/frames and return which rows to drop and why, so the
caller can count every removal.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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


def resolve_label_conflicts(frame: pd.DataFrame, policy: Literal["majority", "drop"]) -> tuple[list[Removal], int]:
    """Rows whose normalised text carries more than one label, resolved by ``policy``.

    ``majority`` keeps the rows with the most frequent label (a tie drops them all);
    ``drop`` drops every row of a conflicting text. Returns removals and the number of
    conflicting texts.
    """
    pairs = pd.DataFrame({"key": frame["text"].map(normalize_text).to_numpy(), "label": frame["label"].to_numpy()})
    n_labels = pairs.groupby("key", sort=False)["label"].transform("nunique")
    conflicted = pairs[n_labels.to_numpy() > 1]  # usually tiny: the per-text counting happens only here
    drop: list[int] = []
    for _, group in conflicted.groupby("key", sort=False):
        counts = Counter(group["label"])
        (top, n_top), (_, n_second) = counts.most_common(2)
        drop += [
            pos
            for pos, label in zip(group.index, group["label"], strict=True)
            if policy == "drop" or n_top == n_second or label != top
        ]
    drop.sort()
    reason = f"label_conflict_{policy}"
    return ([Removal(tuple(drop), reason)] if drop else []), conflicted["key"].nunique()


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
    return list({norm[i : i + size].encode() for i in range(len(norm) - size + 1)})


_SIGN_CHUNK = 512  # texts per vectorised block: (shingles x num_perm) uint32 stays ~10 MB


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine permutations."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def minhash_signatures(texts: Sequence[str], cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures over character shingles, one uint32 row per text.

    Row for row equal to ``datasketch.MinHash(num_perm, seed=1).update_batch(shingles)``
    (a unit test holds it to that), but computed for blocks of texts at once and stored
    as one matrix: 4 bytes per permutation per row instead of a Python object per row.
    """
    from datasketch import MinHash
    from datasketch.hashfunc import sha1_hash32

    a, b = MinHash(num_perm=cfg.num_perm, seed=1).permutations
    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    for start in range(0, len(texts), _SIGN_CHUNK):
        hashes: list[int] = []
        offsets = []
        for text in texts[start : start + _SIGN_CHUNK]:
            offsets.append(len(hashes))
            hashes += map(sha1_hash32, _shingles(text, cfg.shingle_size))
        hv = _fmix32(np.asarray(hashes, dtype=np.uint32))[:, None]
        with np.errstate(over="ignore"):  # the permutations are affine maps modulo 2**32
            permuted = hv * a + b
        out[start : start + len(offsets)] = np.minimum.reduceat(permuted, offsets, axis=0)
    return out


def lsh_bands(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for this threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


def _band_buckets(signatures: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket id of every row in every band, and whether that bucket holds another row."""
    mix = np.random.default_rng(0).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)
    bucket = np.empty((len(signatures), bands), dtype=np.int64)
    shared = np.zeros((len(signatures), bands), dtype=bool)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        with np.errstate(over="ignore"):
            key = (block * mix).sum(axis=1, dtype=np.uint64)  # a colliding key only adds a candidate
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        bucket[:, band] = inverse
        shared[:, band] = counts[inverse] > 1
    return bucket, shared


def near_duplicate_positions(
    signatures: np.ndarray, cfg: DedupConfig, reference: np.ndarray | None = None
) -> list[int]:
    """Rows of ``signatures`` that are near duplicates of an earlier kept row or of ``reference``.

    Banded LSH as in datasketch's MinHashLSH (same bands and rows per band): rows that
    share a band bucket are candidates, and a candidate pair counts when the estimated
    Jaccard similarity (the fraction of equal signature values) is at least
    ``cfg.threshold``. A row found to be a duplicate is not a candidate for later rows.
    Buckets are numpy arrays; only rows that share a bucket reach Python.
    """
    reference = np.empty((0, signatures.shape[1]), np.uint32) if reference is None else reference
    n_ref = len(reference)
    bands, rows = lsh_bands(cfg)
    both = np.concatenate([reference, signatures]) if n_ref else signatures
    bucket, shared = _band_buckets(both, bands, rows)
    del both
    bucket += np.arange(bands, dtype=np.int64) * len(bucket)  # one key space for all bands
    kept: dict[int, list[int]] = defaultdict(list)  # bucket key -> kept rows, shared buckets only
    dup = []
    for index in np.flatnonzero(shared.any(axis=1)).tolist():
        keys = bucket[index][shared[index]].tolist()
        if index >= n_ref:
            candidates = {c for key in keys for c in kept.get(key, ())}
            if candidates and _any_similar(
                signatures[index - n_ref],
                np.fromiter(candidates, np.int64, len(candidates)),
                signatures,
                reference,
                cfg.threshold,
            ):
                dup.append(index - n_ref)
                continue
        for key in keys:
            kept[key].append(index)
    return dup


def _any_similar(
    row: np.ndarray, candidates: np.ndarray, own: np.ndarray, reference: np.ndarray, threshold: float
) -> bool:
    n_ref = len(reference)
    for source, picked in ((reference, candidates[candidates < n_ref]), (own, candidates[candidates >= n_ref] - n_ref)):
        if len(picked) and ((source[picked] == row).mean(axis=1) >= threshold).any():
            return True
    return False


def drop_positions(frame: pd.DataFrame, positions: Sequence[int]) -> pd.DataFrame:
    """``frame`` without the rows at ``positions``, index reset."""
    if not len(positions):
        return frame.reset_index(drop=True)
    mask = np.ones(len(frame), dtype=bool)
    mask[list(positions)] = False
    return frame[mask].reset_index(drop=True)
