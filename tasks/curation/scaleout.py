"""Curation on a Dask cluster through prefect-dask's ``DaskTaskRunner``: PII detection and
MinHash signatures.

Each chunk of texts is a file; a task runs on a Dask worker (which loads the detector
once and keeps it) and writes what it found to a file: the spans of each text for PII,
the signature matrix for MinHash. Workers never see the pseudonymisation key: they only
detect, and the spans are replaced here, in the process that holds it, so the key is
never a flow or task parameter (Prefect stores flow-run parameters in its database).
Chunk files hold unscrubbed text and are deleted when the work ends, whatever its end.
Chunks come back in order, so the curated output is byte-identical to the local run.
The cluster is a ``LocalCluster`` unless ``curation.dask_address`` names a scheduler.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, task

from thaw.config import CurationConfig, DedupConfig, PiiConfig
from thaw.pii.detector import PiiDetector, PiiSecret, ScrubStats, Span, replace_spans

if TYPE_CHECKING:
    import numpy as np

_WORKER_DETECTORS: dict[str, PiiDetector] = {}


def _detector(cfg: PiiConfig) -> PiiDetector:
    key = cfg.model_dump_json()
    if key not in _WORKER_DETECTORS:  # once per worker process
        from thaw.offline import apply_offline_environment

        apply_offline_environment()
        _WORKER_DETECTORS[key] = PiiDetector(cfg)
    return _WORKER_DETECTORS[key]


@task(name="detect-pii-chunk", cache_policy=None)
def detect_chunk(source: Path, target: Path, cfg: PiiConfig) -> ScrubStats:
    """PII spans of the JSON list of texts in ``source``, saved to ``target``; the counts."""
    stats, found = ScrubStats(), []
    for spans, ner in _detector(cfg).detect(json.loads(source.read_text(encoding="utf-8"))):
        stats.count(spans, ner)
        found.append([[s.start, s.end, s.entity] for s in spans])
    target.write_text(json.dumps(found), encoding="utf-8")
    return stats


@flow(name="detect-pii-on-dask")
def detect_chunks(chunks: list[Path], cfg: PiiConfig) -> list[ScrubStats]:
    """Submit every chunk to the task runner's cluster; wait for all, in order."""
    futures = [detect_chunk.submit(c, c.with_name(c.stem + ".spans.json"), cfg) for c in chunks]
    return [f.result() for f in futures]


def _runner(cfg: CurationConfig, scratch: Path):
    """The task runner: the cluster at ``dask_address``, or a LocalCluster whose workers
    keep what they spill (the texts they hold) in ``scratch``, which the caller removes,
    not in the system's temporary directory."""
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
            "local_directory": str(scratch),
            "scheduler_kwargs": {"local_directory": str(scratch)},  # its lock files, else in /tmp
        },
    )


def scrub_texts_on_dask(
    texts: list[str], cfg: CurationConfig, secret: PiiSecret, stats: ScrubStats, work_dir: Path
) -> list[str]:
    """``scrub_texts`` with detection on a Dask cluster: same output, same order."""
    try:
        chunks = _write_chunks(texts, cfg.pii.chunk_rows, work_dir, "chunk")
        counts = detect_chunks.with_options(task_runner=_runner(cfg, work_dir / "dask"))(chunks, cfg.pii)
        out: list[str] = []
        for chunk, part in zip(chunks, counts, strict=True):
            found = json.loads(chunk.with_name(chunk.stem + ".spans.json").read_text(encoding="utf-8"))
            chunk_texts = json.loads(chunk.read_text(encoding="utf-8"))
            for text, spans in zip(chunk_texts, found, strict=True):
                out.append(replace_spans(text, [Span(*s) for s in spans], secret) if spans else text)
            stats.merge(part)
        return out
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@task(name="minhash-chunk", cache_policy=None)
def minhash_chunk(source: Path, target: Path, cfg: DedupConfig) -> Path:
    """MinHash hash values of the JSON list of texts in ``source``, saved to ``target`` (.npy)."""
    import numpy as np

    from tasks.curation.dedup import minhash_signatures

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
    """A ``signer`` for ``near_duplicate_positions`` that computes signatures on the cluster
    (each call's chunk files are deleted once its signatures are loaded)."""
    import itertools

    import numpy as np

    calls = itertools.count()

    def sign(texts: list[str], dedup: DedupConfig) -> np.ndarray:
        if not texts:
            return np.empty((0, dedup.num_perm), dtype=np.uint32)
        call_dir = work_dir / f"call{next(calls):03d}"
        try:
            chunks = _write_chunks(texts, cfg.pii.chunk_rows, call_dir, "chunk")
            runner = _runner(cfg, call_dir / "dask")
            arrays = [np.load(p) for p in minhash_chunks.with_options(task_runner=runner)(chunks, dedup)]
            return np.concatenate(arrays)
        finally:
            shutil.rmtree(call_dir, ignore_errors=True)

    return sign
