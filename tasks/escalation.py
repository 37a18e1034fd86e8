"""The gate's I/O around ``thaw.gate``: decisions after each rung, the final selection,
the transfer note (markdown + JSON + tags), the ladder chart and learning curves."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.gate import (
    Comparison,
    Decision,
    RungScore,
    escalation_decision,
    negative_transfer,
    paired_comparison,
    select_rung,
)
from thaw.plots import pyplot, save_figure
from thaw.rungs import Selection, TrainedRung


def _score(rung: TrainedRung, cfg: ThawConfig) -> RungScore:
    return RungScore(rung.rung, rung.validation[cfg.training.ladder.metric], rung.validation_predictions)


def _compare(y_val, a: TrainedRung, b: TrainedRung, cfg: ThawConfig) -> Comparison:
    ladder = cfg.training.ladder
    return paired_comparison(
        y_val,
        _score(a, cfg),
        _score(b, cfg),
        ladder.metric,
        ladder.bootstrap_samples,
        cfg.training.confidence_level,
        cfg.training.seed,
    )


def _y_val(curated: DatasetVersion, cfg: ThawConfig) -> list[str]:
    return curated.read(cfg.root, "validation").labels


@task(name="decide-escalation")
def decide_escalation(
    trained: list[TrainedRung], curated: DatasetVersion, cfg: ThawConfig, elapsed_s: float
) -> Decision:
    """The gate after the latest rung: compare it with the best simpler rung, then decide."""
    ladder = cfg.training.ladder
    metric = ladder.metric
    latest, simpler = trained[-1], trained[:-1]
    comparison = None
    best = max(trained, key=lambda r: r.validation[metric])
    if simpler:
        best_simpler = max(simpler, key=lambda r: r.validation[metric])
        comparison = _compare(_y_val(curated, cfg), best_simpler, latest, cfg)
        best = latest if comparison.b_better(ladder.alpha) else best_simpler
    rungs_left = min(len(ladder.rungs), ladder.max_rungs) - len(trained)
    return escalation_decision(
        latest.rung,
        best.rung,
        best.validation[metric],
        comparison,
        ladder.target,
        ladder.alpha,
        rungs_left,
        ladder.time_budget_minutes * 60 - elapsed_s,
    )


@task(name="select-rung")
def select_final_rung(
    trained: list[TrainedRung], scratch: TrainedRung, curated: DatasetVersion, cfg: ThawConfig
) -> Selection:
    """The simplest rung not significantly worse than the best; negative transfer flagged."""
    y_val = _y_val(curated, cfg)
    alpha = cfg.training.ladder.alpha
    best = max(trained, key=lambda r: r.validation[cfg.training.ladder.metric])
    comparisons = {r.rung: _compare(y_val, r, best, cfg) for r in trained if r.rung != best.rung}
    rung, reason = select_rung([_score(r, cfg) for r in trained], comparisons, alpha)
    frozen = trained[0]
    vs_scratch = _compare(y_val, frozen, scratch, cfg)
    negative = negative_transfer(_score(scratch, cfg), _score(frozen, cfg), vs_scratch, alpha)
    return Selection(rung, reason, comparisons, vs_scratch, negative)


def _deeper_evidence(selected: str, cfg: ThawConfig) -> str:
    ladder = cfg.training.ladder
    order = list(ladder.rungs)
    deeper = order[order.index(selected) + 1 :] if selected in order else []
    if not deeper:
        return "This is the deepest rung configured; only more or better-labelled data would help."
    return (
        f"Going deeper ({', '.join(deeper)}) is justified when a deeper rung beats {selected} on validation "
        f"by a paired test at p < {ladder.alpha} ({ladder.metric}), e.g. after more training data, "
        f"or when {selected} falls below the target {ladder.target}."
    )


def transfer_note(
    selection: Selection, trained: list[TrainedRung], scratch: TrainedRung, decisions: list[Decision], cfg: ThawConfig
) -> dict:
    """The transfer note as a dict: surfaces, results with intervals, decisions, evidence."""
    metric = cfg.training.ladder.metric
    chosen = next(r for r in trained if r.rung == selection.rung)
    rows = []
    for r in [scratch, *trained]:
        rows.append(
            {
                "rung": r.rung,
                "method": r.details.method,
                "frozen": r.details.frozen,
                "trainable_parameters": r.trainable_parameters,
                "trainable_fraction_of_backbone": r.details.trainable_fraction_of_backbone,
                metric: r.validation[metric],
                f"{metric}_low": r.validation[f"{metric}_low"],
                f"{metric}_high": r.validation[f"{metric}_high"],
            }
        )
    return {
        "selected_rung": selection.rung,
        "why": selection.reason,
        "metric": metric,
        "confidence_level": cfg.training.confidence_level,
        "what_was_frozen": chosen.details.frozen,
        "method": chosen.details.method,
        "trainable_parameters": chosen.trainable_parameters,
        "trainable_fraction_of_backbone": chosen.details.trainable_fraction_of_backbone,
        "validation": rows,
        "comparisons_to_best": {k: asdict(v) for k, v in selection.comparisons_to_best.items()},
        "frozen_vs_scratch": asdict(selection.scratch_comparison),
        "negative_transfer": selection.negative_transfer,
        "decisions": [
            {
                "after": d.after,
                "action": d.action,
                "reason": d.reason,
                "best": d.best,
                "comparison": asdict(d.comparison) if d.comparison else None,
            }
            for d in decisions
        ],
        "deeper_would_need": _deeper_evidence(selection.rung, cfg),
    }


def _markdown(note: dict) -> str:
    m = note["metric"]
    lines = [
        f"# Transfer note: {note['selected_rung']} rung selected",
        "",
        f"**Why:** {note['why']}.",
        "",
        f"**Frozen:** {note['what_was_frozen']}. **Trained:** {note['method']}, "
        f"{note['trainable_parameters']:,} parameters "
        f"({(note['trainable_fraction_of_backbone'] or 0) * 100:.2f}% of the backbone).",
        "",
        f"| rung | method | validation {m} | {note['confidence_level']:.0%} interval | trainable params |",
        "|---|---|---|---|---|",
    ]
    for r in note["validation"]:
        interval = f"[{r[m + '_low']:.4f}, {r[m + '_high']:.4f}]"
        lines.append(f"| {r['rung']} | {r['method']} | {r[m]:.4f} | {interval} | {r['trainable_parameters']:,} |")
    lines += ["", "## Gate decisions", ""] + [
        f"- after **{d['after']}**: {d['action']} ({d['reason']})" for d in note["decisions"]
    ]
    fs = note["frozen_vs_scratch"]
    lines += [
        "",
        f"Frozen minus scratch baseline: {-fs['delta']:+.4f} "
        f"(p={fs['p_value']:.3f} that the scratch baseline is better); "
        f"negative transfer: {'YES' if note['negative_transfer'] else 'no'}.",
        "",
        f"**Deeper:** {note['deeper_would_need']}",
        "",
    ]
    return "\n".join(lines)


def plot_ladder(note: dict, path: Path) -> Path:
    """Validation metric per rung with its interval."""
    m, rows = note["metric"], note["validation"]
    x = np.arange(len(rows))
    vals = np.array([r[m] for r in rows])
    err = np.array([[r[m] - r[m + "_low"] for r in rows], [r[m + "_high"] - r[m] for r in rows]])
    fig, ax = pyplot().subplots(figsize=(6, 4))
    colors = ["tab:green" if r["rung"] == note["selected_rung"] else "tab:gray" for r in rows]
    ax.bar(x, vals, yerr=err, color=colors, capsize=4)
    ax.set_xticks(x, [r["rung"] for r in rows])
    ax.set_ylim(max(0.0, vals.min() - 0.15), 1.0)
    ax.set_ylabel(f"validation {m}")
    ax.set_title(f"Adaptation ladder (selected in green, {note['confidence_level']:.0%} intervals)")
    return save_figure(fig, path)


def plot_learning_curves(trained: list[TrainedRung], path: Path) -> Path:
    """Training loss and validation metric per epoch for every fine-tuned rung."""
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(9, 3.5))
    for r in trained:
        hist = r.details.history
        if hist:
            a.plot([h.epoch + 1 for h in hist], [h.train_loss for h in hist], marker="o", label=r.rung)
            b.plot([h.epoch + 1 for h in hist], [h.validation_metric for h in hist], marker="o", label=r.rung)
    a.set(xlabel="epoch", ylabel="train loss", title="Training loss")
    b.set(xlabel="epoch", ylabel="validation metric", title="Validation")
    for ax in (a, b):
        ax.legend(fontsize=8) if ax.lines else ax.text(
            0.5, 0.5, "no fine-tuned rung", ha="center", transform=ax.transAxes
        )
    return save_figure(fig, path)


@task(name="write-transfer-note")
def write_transfer_note(
    selection: Selection,
    trained: list[TrainedRung],
    scratch: TrainedRung,
    decisions: list[Decision],
    cfg: ThawConfig,
    run_dir: Path,
) -> list[Path]:
    """transfer_note.md/.json, ladder_chart.png and learning_curves.png in ``run_dir``."""
    note = transfer_note(selection, trained, scratch, decisions, cfg)
    (run_dir / "transfer_note.json").write_text(json.dumps(note, indent=2), encoding="utf-8")
    (run_dir / "transfer_note.md").write_text(_markdown(note), encoding="utf-8")
    return [
        run_dir / "transfer_note.json",
        run_dir / "transfer_note.md",
        plot_ladder(note, run_dir / "ladder_chart.png"),
        plot_learning_curves(trained, run_dir / "learning_curves.png"),
    ]
