"""Frozen-backbone features: computed once per (backbone, data, pooling, length), cached.

The cache key is content-addressed: backbone revision digest, the split file's md5,
pooling and max length. A re-run on unchanged data reads the ``.npy`` instead of
running the encoder; a changed file gets a new key.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, atomic_output, read_split
from thaw.modeling import BackboneRef, configure_threads, embed_texts, load_encoder, resolve_backbone, select_device
from thaw.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Cached feature matrices per split and whether each came from the cache."""

    backbone: BackboneRef
    paths: dict[str, Path]
    cache_hits: dict[str, bool]


def feature_cache_key(backbone_revision: str, data_md5: str, pooling: str, max_length: int) -> str:
    """sha256 naming one cached feature matrix."""
    blob = f"{backbone_revision}|{data_md5}|{pooling}|{max_length}".encode()
    return hashlib.sha256(blob).hexdigest()


@task(name="extract-frozen-features")
def extract_frozen_features(curated: DatasetVersion, cfg: ThawConfig) -> FeatureSet:
    """Embed each curated split with the frozen backbone, reusing cached matrices."""
    ref, directory = resolve_backbone(cfg.backbone)
    cache_dir = cfg.state_path / "cache" / "features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths, hits = {}, {}
    encoder = None
    for split, tracked in sorted(curated.files.items()):
        key = feature_cache_key(ref.revision, tracked.md5, cfg.backbone.pooling, cfg.backbone.max_length)
        paths[split] = cache_dir / f"{key}.npy"
        hits[split] = paths[split].is_file()
        if hits[split]:
            continue
        if encoder is None:
            configure_threads()
            device = select_device()
            encoder = (*load_encoder(directory, device), device)
        texts = read_split(curated.local_path(cfg.root, split)).texts
        matrix = embed_texts(
            texts, encoder[0], encoder[1], cfg.backbone, encoder[2], Progress(len(texts), f"features {split}")
        )
        with atomic_output(paths[split]) as tmp, open(tmp, "wb") as fh:
            np.save(fh, matrix)
    log.info("frozen features: %s", ", ".join(f"{s} {'cached' if h else 'computed'}" for s, h in sorted(hits.items())))
    return FeatureSet(ref, paths, hits)
