"""What a model costs to serve, measured on the serving path.

``measure_latency`` loads a model directory the way ``thaw serve`` does
(``thaw.serving.ThawPredictor``: scrubbing, tokenising, encoder, head) and times it on
held-out texts: each of ``rows`` texts alone (batch 1), then 8 batches of ``batch``, the
scrubbing cache emptied before every call, so each request pays for scrubbing and
tokenising as a served one does. It reports p50/p95/p99 of both, the throughput at
``batch``, the resident memory the loaded model added to the process, and the size of
the model's own files and of the shared base backbone.

The figures are of this machine, this process's thread settings and the precision the
device runs at (``thaw.modeling.numeric_precision``); they compare rungs measured in one
run, not machines.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# The files a registered model carries (thaw.serving); a rung directory may hold more.
MODEL_FILES = (
    "model.json",
    "labels.json",
    "head.safetensors",
    "words.json",
    "words.safetensors",
    "delta.safetensors",
    "adapter",
    "onnx",
)


@dataclass(frozen=True)
class LatencyProfile:
    """One model's serving cost; milliseconds, megabytes, rows per second."""

    rows: int  # texts timed at batch 1
    batch: int
    p50_ms: float  # batch 1
    p95_ms: float
    p99_ms: float
    batch_p50_ms: float  # one batch of ``batch`` texts
    batch_p95_ms: float
    batch_p99_ms: float
    rows_per_s: float  # at ``batch``
    rss_mb: float  # resident memory the loaded model added to the process
    model_mb: float  # the model's own files (head, adapter or changed tensors)
    backbone_mb: float  # the shared base backbone it loads (0 under ONNX Runtime: its file holds the encoder)
    device: str
    precision: str  # thaw.modeling.numeric_precision, or the ONNX Runtime engine that ran it
    measured_on: str = ""  # "" when measured on this model; else the model whose figures these are

    def to_dict(self) -> dict:
        return asdict(self)


def _rss_mb() -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _size_mb(paths: Sequence[Path]) -> float:
    from thaw.state_budget import disk_bytes

    return sum(disk_bytes(path, follow_links=True) for path in paths) / 2**20  # a backbone's files may be links


def _percentiles(ms: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(ms), [50, 95, 99])
    return round(float(p50), 2), round(float(p95), 2), round(float(p99), 2)


def measure_latency(
    model_dir: Path, texts: Sequence[str], rows: int, batch: int, batches: int = 8, repeats: int = 1
) -> LatencyProfile:
    """The serving cost of the model in ``model_dir`` on ``texts`` (held-out, at least one):
    ``rows`` texts one at a time, then ``batches`` batches of ``batch`` (``repeats`` times),
    held-out texts again where there are fewer."""
    from thaw.modeling import locate_backbone, numeric_precision, snapshot_files
    from thaw.pii.masking import clear_cache
    from thaw.serving import ThawPredictor

    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("latency needs at least one held-out text")
    gc.collect()
    before = _rss_mb()
    predictor = ThawPredictor(model_dir)
    predictor.predict(texts[:2])  # warm: first-call allocations and kernels
    singles = [texts[i % len(texts)] for i in range(rows)]  # held-out rows, again if there are fewer
    clear_cache()
    one = []
    for text in singles:
        started = time.perf_counter()
        predictor.predict([text])
        one.append((time.perf_counter() - started) * 1000)
    whole = [texts[i % len(texts)] for i in range(max(batch * batches, len(texts)))]
    chunks = [whole[i : i + batch] for i in range(0, len(whole) - batch + 1, batch)][:batches]
    many = []
    for _ in range(repeats):
        for chunk in chunks:
            clear_cache()
            started = time.perf_counter()
            predictor.predict(chunk)
            many.append((time.perf_counter() - started) * 1000)
    after = _rss_mb()
    p50, p95, p99 = _percentiles(one)
    b50, b95, b99 = _percentiles(many)
    backbone = locate_backbone(predictor.ref, verify=False)
    onnx = predictor.session is not None
    profile = LatencyProfile(
        rows=len(one),
        batch=batch,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        batch_p50_ms=b50,
        batch_p95_ms=b95,
        batch_p99_ms=b99,
        rows_per_s=round(batch * len(many) / (sum(many) / 1000), 1),
        rss_mb=round(max(after - before, 0.0), 1),
        model_mb=round(_size_mb([model_dir / name for name in MODEL_FILES]), 4),
        backbone_mb=0.0 if onnx else round(_size_mb([backbone / name for name in snapshot_files(backbone)]), 1),
        device=str(predictor.device),
        precision=predictor.engine if onnx else numeric_precision(predictor.device),
    )
    del predictor
    gc.collect()
    clear_cache()
    return profile
