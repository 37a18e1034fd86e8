"""PII scrubbing on a Dask cluster through prefect-dask's ``DaskTaskRunner``.

Each chunk of texts is a file; a ``scrub-chunk`` task runs on a Dask worker (which loads
Presidio once and keeps it) and writes the scrubbed chunk to a file. Chunks come back in
order, so the curated output is byte-identical to the single-process run. The cluster
is a ``LocalCluster`` unless ``curation.dask_address`` names a running scheduler.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, task

from tasks.pii import PiiSecret, ScrubStats, build_analyzer, scrub_texts
from thaw.config import CurationConfig, PiiConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

_WORKER_ANALYZERS: dict[str, "AnalyzerEngine"] = {}


def _analyzer(cfg: PiiConfig) -> "AnalyzerEngine":
    key = cfg.model_dump_json()
    if key not in _WORKER_ANALYZERS:  # once per worker process
        from thaw.offline import apply_offline_environment

        apply_offline_environment()
        _WORKER_ANALYZERS[key] = build_analyzer(cfg)
    return _WORKER_ANALYZERS[key]


@task(name="scrub-chunk", cache_policy=None)
def scrub_chunk(source: Path, target: Path, cfg: PiiConfig, secret: PiiSecret) -> dict:
    """Scrub the JSON list of texts in ``source`` into ``target``; return the counts."""
    stats = ScrubStats()
    texts = json.loads(source.read_text(encoding="utf-8"))
    out = list(scrub_texts(texts, _analyzer(cfg), secret, cfg, stats))
    target.write_text(json.dumps(out), encoding="utf-8")
    return {"rows_seen": stats.rows_seen, "rows_changed": stats.rows_changed, "ner_rows": stats.ner_rows,
            "entities": dict(stats.entities)}


@flow(name="scrub-on-dask")
def scrub_chunks(chunks: list[Path], cfg: PiiConfig, secret: PiiSecret) -> list[dict]:
    """Submit every chunk to the task runner's cluster; wait for all, in order."""
    futures = [scrub_chunk.submit(c, c.with_name(c.stem + ".scrubbed.json"), cfg, secret) for c in chunks]
    return [f.result() for f in futures]


def _runner(cfg: CurationConfig):
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": cfg.dask_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None, "host": "127.0.0.1"})


def scrub_texts_on_dask(texts: list[str], cfg: CurationConfig, secret: PiiSecret, stats: ScrubStats, work_dir: Path) -> list[str]:
    """``scrub_texts`` over a Dask cluster: same output, same order."""
    work_dir.mkdir(parents=True, exist_ok=True)
    size = cfg.pii.chunk_rows
    chunks = []
    for i in range(0, len(texts), size):
        path = work_dir / f"chunk-{i // size:06d}.json"
        path.write_text(json.dumps(texts[i:i + size]), encoding="utf-8")
        chunks.append(path)
    counts = scrub_chunks.with_options(task_runner=_runner(cfg))(chunks, cfg.pii, secret)
    out: list[str] = []
    for chunk, part in zip(chunks, counts):
        out += json.loads(chunk.with_name(chunk.stem + ".scrubbed.json").read_text(encoding="utf-8"))
        stats.rows_seen += part["rows_seen"]
        stats.rows_changed += part["rows_changed"]
        stats.ner_rows += part["ner_rows"]
        stats.entities.update(part["entities"])
    return out
