"""Each rung's serving cost, measured in the run, and the latency budget the gate keeps.

Every rung with a model of its own is loaded as ``thaw serve`` loads it and timed on the
held-out test texts (``thaw.latency``: scrubbing, tokenising, encoder and head; batch 1
and ``serving.latency_batch``). A rung scored by cross-validation has no single model
before the refit: it serves on the frozen rung's graph (its weights are merged into the
base backbone at load; ``thaw.serving.apply_adaptation``), so the frozen rung's figures
stand for it, marked as such, and the registered model is measured after the refit.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import read_split
from thaw.latency import LatencyProfile, measure_latency
from thaw.rungs import LadderContext, TrainedRung

log = logging.getLogger(__name__)


def held_out_texts(ctx: LadderContext) -> list[str]:
    """The texts latency is measured on: the test split (labels unused)."""
    return read_split(ctx.curated.local_path(ctx.cfg.root, "test")).texts


def _measure(model_dir: Path, texts: list[str], cfg: ThawConfig) -> LatencyProfile:
    return measure_latency(model_dir, texts, cfg.serving.latency_rows, cfg.serving.latency_batch)


@task(name="measure-serving-cost")
def measure_rungs(trained: list[TrainedRung], ctx: LadderContext) -> dict[str, LatencyProfile]:
    """Each trained rung's serving cost (the frozen rung's for rungs without a model)."""
    texts = held_out_texts(ctx)
    out: dict[str, LatencyProfile] = {}
    for rung in trained:
        if rung.model_dir is not None:
            out[rung.rung] = _measure(rung.model_dir, texts, ctx.cfg)
    frozen = out.get(trained[0].rung)
    for rung in trained:
        if rung.rung not in out and frozen is not None:
            out[rung.rung] = LatencyProfile(**{**frozen.to_dict(), "measured_on": trained[0].rung})
    for name, p in out.items():
        log.info("%s serves at p95 %.1f ms (batch 1), %.0f rows/s at batch %d", name, p.p95_ms, p.rows_per_s, p.batch)
    return out


@task(name="measure-registered-cost")
def measure_registered(final: TrainedRung, ctx: LadderContext) -> LatencyProfile:
    """The serving cost of the model that is tested and registered."""
    return _measure(final.model_dir, held_out_texts(ctx), ctx.cfg)


def over_budget(latency: dict[str, LatencyProfile], budget_ms: float | None) -> dict[str, str]:
    """Rungs whose p95 at batch 1 exceeds ``budget_ms``, each with the reason in words."""
    if budget_ms is None:
        return {}
    return {
        rung: f"p95 at batch 1 is {p.p95_ms:.1f} ms, over the {budget_ms:g} ms budget (serving.latency_budget_ms)"
        for rung, p in latency.items()
        if p.p95_ms > budget_ms
    }
