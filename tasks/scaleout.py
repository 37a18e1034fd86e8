"""Curation on a Dask cluster through prefect-dask's ``DaskTaskRunner``: PII scrubbing and
MinHash signatures.

Each chunk of texts is a file; a task runs on a Dask worker (which loads Presidio once
and keeps it) and writes its result to a file. Chunks come back in order, so the curated
output is byte-identical to the single-process run. The cluster is a ``LocalCluster``
unless ``curation.dask_address`` names a running scheduler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, task

from tasks.pii import PiiSecret, ScrubStats, build_analyzer, scrub_texts
from thaw.config import CurationConfig, DedupConfig, PiiConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

_WORKER_ANALYZERS: dict[str, AnalyzerEngine] = {}


def _analyzer(cfg: PiiConfig) -> AnalyzerEngine:
    key = cfg.model_dump_json()
    if key not in _WORKER_ANALYZERS:  # once per worker process
        from thaw.offline import apply_offline_environment

        apply_offline_environment()
        _WORKER_ANALYZERS[key] = build_analyzer(cfg)
    return _WORKER_ANALYZERS[key]


@task(name="scrub-chunk", cache_policy=None)
def scrub_chunk(source: Path, target: Path, cfg: PiiConfig, secret: PiiSecret) -> ScrubStats:
    """Scrub the JSON list of texts in ``source`` into ``target``; return the counts."""
    stats = ScrubStats()
    texts = json.loads(source.read_text(encoding="utf-8"))
    out = list(scrub_texts(texts, _analyzer(cfg), secret, cfg, stats))
    target.write_text(json.dumps(out), encoding="utf-8")
    return stats


@flow(name="scrub-on-dask")
def scrub_chunks(chunks: list[Path], cfg: PiiConfig, secret: PiiSecret) -> list[ScrubStats]:
    """Submit every chunk to the task runner's cluster; wait for all, in order."""
    futures = [scrub_chunk.submit(c, c.with_name(c.stem + ".scrubbed.json"), cfg, secret) for c in chunks]
    return [f.result() for f in futures]


def _runner(cfg: CurationConfig):
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": cfg.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "host": "127.0.0.1",
        },
    )


def scrub_texts_on_dask(
    texts: list[str], cfg: CurationConfig, secret: PiiSecret, stats: ScrubStats, work_dir: Path
) -> list[str]:
    """``scrub_texts`` over a Dask cluster: same output, same order."""
    chunks = _write_chunks(texts, cfg.pii.chunk_rows, work_dir, "chunk")
    counts = scrub_chunks.with_options(task_runner=_runner(cfg))(chunks, cfg.pii, secret)
    out: list[str] = []
    for chunk, part in zip(chunks, counts, strict=True):
        out += json.loads(chunk.with_name(chunk.stem + ".scrubbed.json").read_text(encoding="utf-8"))
        stats.merge(part)
    return out


@task(name="minhash-chunk", cache_policy=None)
def minhash_chunk(source: Path, target: Path, cfg: DedupConfig) -> Path:
    """MinHash hash values of the JSON list of texts in ``source``, saved to ``target`` (.npy)."""
    import numpy as np

    from tasks.dedup import minhash_signatures

    texts = json.loads(source.read_text(encoding="utf-8"))
    np.save(target, minhash_signatures(texts, cfg))
    return target


@flow(name="minhash-on-dask")
def minhash_chunks(chunks: list[Path], cfg: DedupConfig) -> list[Path]:
    futures = [minhash_chunk.submit(c, c.with_name(c.stem + ".npy"), cfg) for c in chunks]
    return [f.result() for f in futures]


def _write_chunks(texts: list[str], size: int, work_dir: Path, prefix: str) -> list[Path]:
    work_dir.mkdir(parents=True, exist_ok=True)
    chunks = []
    for i in range(0, len(texts), size):
        path = work_dir / f"{prefix}-{i // size:06d}.json"
        path.write_text(json.dumps(texts[i : i + size]), encoding="utf-8")
        chunks.append(path)
    return chunks


def dask_signer(cfg: CurationConfig, work_dir: Path):
    """A ``signer`` for ``near_duplicate_positions`` that computes signatures on the cluster."""
    import itertools

    import numpy as np

    calls = itertools.count()

    def sign(texts: list[str], dedup: DedupConfig) -> np.ndarray:
        if not texts:
            return np.empty((0, dedup.num_perm), dtype=np.uint32)
        chunks = _write_chunks(texts, cfg.pii.chunk_rows, work_dir, f"call{next(calls):03d}")
        arrays = [np.load(p) for p in minhash_chunks.with_options(task_runner=_runner(cfg))(chunks, dedup)]
        return np.concatenate(arrays)

    return sign
