"""Frozen-backbone features: computed once per (backbone, data, pooling, length), cached.

Each split's matrix is an entry of the ``features`` content cache (``thaw.content_cache``)
keyed by the backbone's revision digest, the split file's md5, pooling and max length,
the versions of torch and transformers, and the device and precision it ran in. A
re-run on unchanged data reads the ``.npy`` instead of running the encoder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from thaw.config import ThawConfig
from thaw.content_cache import ContentCache, content_key
from thaw.datasets import DatasetVersion, read_split
from thaw.modeling import (
    BackboneRef,
    check_max_length,
    configure_threads,
    embed_texts,
    load_encoder,
    numeric_precision,
    resolve_backbone,
    select_device,
)
from thaw.progress import Progress
from thaw.text_form import TEXT_FORM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Cached feature matrices per split and whether each came from the cache."""

    backbone: BackboneRef
    paths: dict[str, Path]
    cache_hits: dict[str, bool]
    keys: dict[str, str]  # each split's content key: what its matrix was computed from


FEATURES_FILE = "features.npy"
FEATURE_LIBRARIES = ("torch", "transformers")


def feature_cache_key(backbone_revision: str, data_md5: str, pooling: str, max_length: int, precision: str) -> str:
    """The content key of one split's feature matrix."""
    settings = {
        "backbone": backbone_revision,
        "data": data_md5,
        "pooling": pooling,
        "max_length": max_length,
        "text_form": TEXT_FORM,
    }
    return content_key("features", settings, FEATURE_LIBRARIES, precision)


@task(name="extract-frozen-features")
def extract_frozen_features(curated: DatasetVersion, cfg: ThawConfig) -> FeatureSet:
    """Embed each curated split with the frozen backbone, reusing cached matrices."""
    ref, directory = resolve_backbone(cfg.backbone)
    check_max_length(directory, cfg.backbone)
    cache = ContentCache(cfg.state_path / "cache" / "features")
    device = select_device()
    paths, hits, keys = {}, {}, {}
    encoder = None
    for split, tracked in sorted(curated.files.items()):
        b = cfg.backbone
        key = feature_cache_key(ref.revision, tracked.md5, b.pooling, b.max_length, numeric_precision(device))
        keys[split], paths[split] = key, cache.path(key) / FEATURES_FILE
        hits[split] = cache.get(key) is not None
        if hits[split]:
            continue
        if encoder is None:
            configure_threads()
            encoder = load_encoder(directory, device)
        texts = read_split(curated.local_path(cfg.root, split)).texts
        matrix = embed_texts(texts, encoder[0], encoder[1], b, device, Progress(len(texts), f"features {split}"))
        with cache.put(key) as staging:
            np.save(staging / FEATURES_FILE, matrix)
    log.info("frozen features: %s", ", ".join(f"{s} {'cached' if h else 'computed'}" for s, h in sorted(hits.items())))
    return FeatureSet(ref, paths, hits, keys)
