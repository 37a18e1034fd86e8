"""The transfer note: what the data said before climbing, the first move the decision
table suggested, every rung with its interval, the gate's decisions, the worst classes
(and slices) and whether escalation fixed them, how far each rung moved the backbone,
and what was finally registered. Written as markdown and JSON, with a ladder chart and
learning curves. A figure that fails to draw is reported, never fatal."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
from prefect import task

from tasks.ladder.cross_validation import POOL
from tasks.ladder.scratch_baseline import SCRATCH, SCRATCH_LABEL
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.gate import Comparison, Decision
from thaw.metrics import per_class_f1, slice_accuracy, worst_classes
from thaw.plots import pyplot, save_figure
from thaw.rung_registry import rung_method
from thaw.rungs import EvaluationPlan, LadderContext, LadderResult, Selection, TrainedRung
from thaw.shown import md_text

log = logging.getLogger(__name__)


def diagnostics(trained: list[TrainedRung], rows, labels: tuple[str, ...]) -> dict:
    """Per-class F1 of every rung on the rows they were scored on, the frozen rung's worst
    classes through the ladder, and accuracy per slice when the data names a slice."""
    f1 = {r.rung: per_class_f1(rows.labels, r.validation_predictions, labels) for r in trained}
    out = {"worst_classes": worst_classes(f1, trained[0].rung), "per_class_f1": f1}
    if rows.slices is not None:
        out["slices"] = {r.rung: slice_accuracy(rows.labels, r.validation_predictions, rows.slices) for r in trained}
    return out


def rung_label(rung: str) -> str:
    """How reports name a rung: the registered rung's label, or the scratch baseline's."""
    return SCRATCH_LABEL if rung == SCRATCH else rung_method(rung).label


def _rung_row(r: TrainedRung, metric: str) -> dict:
    movement = r.details.movement
    return {
        "rung": r.rung,
        "label": rung_label(r.rung),
        "method": r.details.method,
        "frozen": r.details.frozen,
        "trainable_parameters": r.trainable_parameters,
        "trainable_fraction_of_backbone": r.details.trainable_fraction_of_backbone,
        metric: r.validation.get(metric),
        f"{metric}_low": r.validation.get(f"{metric}_low"),
        f"{metric}_high": r.validation.get(f"{metric}_high"),
        "folds": r.details.folds,
        # the gate's evidence under cross-validation: the metric on each fold's held-out
        # rows, so a comparison's delta and standard error can be recomputed from the note
        "fold_scores": dict(r.fold_scores),
        # and its mean log-loss on them, where the rung gives probabilities (not scratch),
        # each fold's read at a temperature fitted on its repeat's other folds
        "fold_log_loss": dict(r.fold_losses),
        "epochs": {
            "run": r.details.epochs_run,
            "configured": r.details.settings.get("epochs"),
            "within_budget": r.details.epochs_within_budget,
        },
        "movement": asdict(movement) if movement else None,
    }


def transfer_note(
    selection: Selection,
    trained: list[TrainedRung],
    scratch: TrainedRung,
    decisions: list[Decision],
    context: dict,
    cfg: ThawConfig,
) -> dict:
    """The transfer note as a dict. ``context``: evidence, evaluation, plan, final,
    diagnostics."""
    metric = cfg.training.ladder.metric
    chosen = next(r for r in trained if r.rung == selection.rung)
    evidence, evaluation, plan = context["evidence"], context["evaluation"], context["plan"]
    final: TrainedRung = context["final"]
    return {
        "selected_rung": selection.rung,
        "why": selection.reason,
        "metric": metric,
        "confidence_level": cfg.training.confidence_level,
        "data": asdict(evidence),
        "scored_by": asdict(evaluation),
        "decision_table": {"suggestion": plan.suggestion, "rungs": list(plan.rungs), "reasons": list(plan.reasons)},
        "what_was_frozen": chosen.details.frozen,
        "method": chosen.details.method,
        "trainable_parameters": chosen.trainable_parameters,
        "trainable_fraction_of_backbone": chosen.details.trainable_fraction_of_backbone,
        "validation": [_rung_row(r, metric) for r in [scratch, *trained]],
        "comparisons_to_best": {k: asdict(v) for k, v in selection.comparisons_to_best.items()},
        "frozen_vs_scratch": asdict(selection.scratch_comparison),
        "negative_transfer": selection.negative_transfer,
        "scratch_ahead": asdict(selection.scratch_ahead) if selection.scratch_ahead else None,
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
        "registered": {
            "rung": final.rung,
            "trained_on": list(final.details.trained_on),
            # a model of its own: after cross-validation the selected rung's folds kept none,
            # though they too trained on train + validation
            "refit": final.model_dir != chosen.model_dir,
            "refit_skipped": final.details.refit_skipped,
            "refit_ran_ahead": final.details.refit_ran_ahead,
            "movement": asdict(final.details.movement) if final.details.movement else None,
        },
        "diagnostics": {k: v for k, v in context["diagnostics"].items() if k != "per_class_f1"},
        "undecided": undecided(decisions, evaluation, selection.rung, cfg.training.ladder.selection),
        "serving_cost": {
            "latency_budget_ms": cfg.serving.latency_budget_ms,
            "over_budget": dict(selection.over_budget),
            "by_rung": context.get("latency", {}),
        },
    }


def undecided(decisions: list[Decision], evaluation: EvaluationPlan, selected: str, rule: str) -> str | None:
    """Say so when the gate could not tell rungs apart, instead of pretending, and what
    was registered all the same: the one-standard-error rule (``ladder.selection``) may
    select a rung whose lead has an interval spanning zero."""
    noisy = [d.comparison for d in decisions if d.comparison is not None and d.comparison.low < 0 < d.comparison.high]
    if not noisy:
        return None
    where = "the cross-validation folds" if evaluation.cross_validated else "the validation split"

    def outcome(c: Comparison) -> str:
        if selected == c.a:
            return f"the simpler rung, {c.a}, was kept"
        if selected == c.b:
            loss = c.log_loss
            if loss is not None and loss.se is not None and loss.delta > loss.se:
                lead = f"{loss.delta:+.4f}, se {loss.se:.4f}"
                return f"{c.b} was selected all the same, on its log-loss lead ({lead}; ladder.selection: {rule})"
            return f"{c.b} was selected all the same (ladder.selection: {rule})"
        return f"{selected} was selected"

    gains = "; ".join(
        f"the gain of {c.b} over {c.a} has an interval spanning zero ({c.low:+.4f} to {c.high:+.4f}), {outcome(c)}"
        for c in noisy
    )
    return f"undecided: on {where}, {gains}; more labelled rows would be needed to tell"


def scratch_ahead_line(c: dict, mode: str) -> str:
    """Said when the from-scratch baseline scored above the selected rung."""
    where = "the cross-validation folds" if mode == "cross-validation" else "the validation split"
    return (
        f"**The from-scratch baseline scored above the selected rung**: {c['delta']:+.4f} over {c['a']} on {where} "
        f"(p={c['p_value']:.3f}). thaw registers models of the backbone, so the baseline is a yardstick, not a "
        "candidate; where it stays ahead, a TF-IDF model may serve this data as well as the registered one."
    )


def _markdown(note: dict) -> str:
    m, level = note["metric"], f"{note['confidence_level']:.0%}"
    table, scored = note["decision_table"], note["scored_by"]
    lines = [f"# Transfer note: {note['selected_rung']} rung selected", "", f"**Why:** {note['why']}.", ""]
    lines += [
        "## Before climbing",
        "",
        *[f"- {r}" for r in table["reasons"]],
        f"- first move suggested by the decision table: **{table['suggestion']}**; rungs climbed after frozen: "
        f"{', '.join(table['rungs']) or 'none'}",
        f"- rungs scored by: {scored['mode']} ({scored['reason']})",
        "",
    ]
    lines += [
        f"| rung | method | {m} | {level} interval | folds | trainable params | backbone movement |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in note["validation"]:
        interval = f"[{r[m + '_low']:.4f}, {r[m + '_high']:.4f}]" if r[m + "_low"] is not None else "-"
        moved = r["movement"]["reason"] if r["movement"] else "-"
        flag = " (**aggressive**)" if r["movement"] and r["movement"]["aggressive"] else ""
        lines.append(
            f"| {r['rung']} ({r['label']}) | {r['method']} | {r[m]:.4f} | {interval} | {r['folds'] or '-'} | "
            f"{r['trainable_parameters']:,} | {moved}{flag} |"
        )
    lines += _fold_lines(note)
    lines += [
        "",
        "## Gate decisions",
        "",
        *[f"- after **{x['after']}**: {x['action']} ({x['reason']})" for x in note["decisions"]],
    ]
    lines += [
        f"- **{r['rung']}** planned {r['epochs']['within_budget']} of its {r['epochs']['configured']} epochs: "
        "the others would have ended past its share of `ladder.time_budget_minutes`"
        for r in note["validation"]
        if r["epochs"]["within_budget"]
    ]
    if note["undecided"]:
        lines += ["", f"**{note['undecided']}**"]
    fs = note["frozen_vs_scratch"]
    lines += [
        "",
        f"Frozen minus scratch baseline: {-fs['delta']:+.4f} (p={fs['p_value']:.3f} that scratch is "
        f"better); negative transfer: {'YES' if note['negative_transfer'] else 'no'}.",
        "",
    ]
    if note.get("scratch_ahead"):
        lines += [scratch_ahead_line(note["scratch_ahead"], note["scored_by"]["mode"]), ""]
    lines += serving_cost_lines(note["serving_cost"])
    lines += _worst_lines(note)
    reg = note["registered"]
    lines += [
        "## Registered",
        "",
        f"The {reg['rung']} rung, trained on {' + '.join(reg['trained_on'])}"
        + (
            " (refit of the selected configuration on all labelled rows before the test score"
            + (
                "; trained beside its cross-validation folds, as the last rung the ladder could try"
                if reg.get("refit_ran_ahead")
                else ""
            )
            + ")."
            if reg["refit"]
            else f" ({reg['refit_skipped']})."
            if reg["refit_skipped"]
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def _fold_lines(note: dict) -> list[str]:
    """Each rung's metric per cross-validation fold (none after a hold-out split), then
    the log-loss of those that give probabilities: the gate compares two rungs on the
    folds both were scored on."""
    m, rows = note["metric"], [r for r in note["validation"] if r.get("fold_scores")]
    if not rows:
        return []
    folds = list(dict.fromkeys(name for r in rows for name in r["fold_scores"]))
    lines = _fold_table(
        f"{m} on each fold's held-out rows; the gate compares two rungs on the folds both ran "
        "(Nadeau and Bengio's corrected resampled t-test):",
        rows,
        "fold_scores",
        folds,
    )
    lossy = [r for r in rows if r.get("fold_log_loss")]
    if lossy:
        lines += _fold_table(
            "Log-loss on the same rows (lower is better; each fold's at a temperature fitted on its "
            "repeat's other folds), which the gate compares the same way: two rungs may score alike "
            f"on every fold's {m} while one is far surer of the right class.",
            lossy,
            "fold_log_loss",
            folds,
        )
    return lines


def _fold_table(caption: str, rows: list[dict], key: str, folds: list[str]) -> list[str]:
    """A markdown table of ``row[key][fold]``: a line per fold, a column per rung."""
    lines = ["", caption, "", f"| fold | {' | '.join(r['rung'] for r in rows)} |", "|---|" + "---|" * len(rows)]
    for name in folds:
        cells = " | ".join(f"{r[key][name]:.4f}" if name in r[key] else "-" for r in rows)
        lines.append(f"| {name} | {cells} |")
    return lines


def serving_cost_lines(cost: dict) -> list[str]:
    """The serving-cost table (markdown): each rung's latency, throughput, memory and size
    as measured in the run on the held-out texts, and the budget's verdicts."""
    by_rung = cost.get("by_rung") or {}
    if not by_rung:
        return []
    any_row = next(iter(by_rung.values()))
    budget = cost.get("latency_budget_ms")
    lines = [
        "## Serving cost",
        "",
        f"Measured in this run on {any_row['rows']} held-out texts, loaded as `thaw serve` loads them (scrubbing, "
        f"tokenising, encoder and head) on {any_row['device']} ({any_row['precision']}); batch 1 and batch "
        f"{any_row['batch']}. Latency budget (p95 at batch 1): "
        + (f"**{budget:g} ms**." if budget else "none set (`serving.latency_budget_ms`)."),
        "",
        f"| model | p50 / p95 / p99 ms (batch 1) | p95 ms (batch {any_row['batch']}) | rows/s (batch "
        f"{any_row['batch']}) | memory added MB | own files MB | backbone MB |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"registered": "registered (PyTorch)", "served": "registered, as served"}
    for name, p in by_rung.items():
        shared = f" (figures of {p['measured_on']}: the same serving graph)" if p.get("measured_on") else ""
        shared += f" ({p['engine']})" if p.get("engine") else ""
        verdict = " **over budget**" if name in cost.get("over_budget", {}) else ""
        lines.append(
            f"| {names.get(name, name)}{shared}{verdict} | {p['p50_ms']:.1f} / {p['p95_ms']:.1f} / {p['p99_ms']:.1f} | "
            f"{p['batch_p95_ms']:.1f} | {p['rows_per_s']:.0f} | {p['rss_mb']:.0f} | {p['model_mb']:.3g} | "
            f"{p['backbone_mb']:.1f} |"
        )
    lines += ["", *[f"- {rung} left out: {why}" for rung, why in cost.get("over_budget", {}).items()], ""]
    return lines


def _worst_lines(note: dict) -> list[str]:
    """The frozen rung's worst classes through the ladder, and the worst slices: labels and
    slice names are the data's, shown as text (a "|" would end a cell, "[x](y)" link)."""
    diag = note["diagnostics"]
    rungs = [r["rung"] for r in note["validation"] if r["rung"] != SCRATCH]
    lines = [
        "## Worst classes of the frozen rung, through the ladder",
        "",
        f"| class | {' | '.join(rungs)} | fixed by |",
        "|---|" + "---|" * (len(rungs) + 1),
    ]
    for w in diag["worst_classes"]:
        cells = " | ".join("-" if w["f1"].get(r) is None else f"{w['f1'][r]:.2f}" for r in rungs)
        lines.append(f"| {md_text(w['label'], 80)} | {cells} | {w['fixed_by'] or 'not fixed'} |")
    for rung, by_slice in (diag.get("slices") or {}).items():
        shown = list(by_slice.items())[:3]
        worst = ", ".join(f"{md_text(s, 80)} {v['accuracy']:.3f} ({v['rows']} rows)" for s, v in shown)
        lines.append(f"\nWorst slices under {rung}: {worst}")
    return [*lines, ""]


def plot_ladder(note: dict, path: Path) -> Path:
    """Validation metric per rung with its interval (intervals hold their estimate)."""
    m, rows = note["metric"], note["validation"]
    x = np.arange(len(rows))
    vals = np.array([r[m] for r in rows])
    err = np.array([[max(0.0, r[m] - r[m + "_low"]) for r in rows], [max(0.0, r[m + "_high"] - r[m]) for r in rows]])
    fig, ax = pyplot().subplots(figsize=(6, 4))
    colors = ["tab:green" if r["rung"] == note["selected_rung"] else "tab:gray" for r in rows]
    ax.bar(x, vals, yerr=err, color=colors, capsize=4)
    ax.set_xticks(x, [r["rung"] for r in rows])
    ax.set_ylim(max(0.0, vals.min() - 0.15), 1.0)
    ax.set_ylabel(f"{m} ({note['scored_by']['mode']})")
    ax.set_title(f"Adaptation ladder (selected in green, {note['confidence_level']:.0%} intervals)")
    return save_figure(fig, path)


def plot_learning_curves(trained: list[TrainedRung], path: Path) -> Path:
    """Training loss and validation metric per epoch (counted from 1) of each fine-tuned rung."""
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(9, 3.5))
    for r in trained:
        hist = r.details.history
        if hist:
            a.plot([h.epoch for h in hist], [h.train_loss for h in hist], marker="o", label=r.rung)
            scored = [h for h in hist if h.validation_metric is not None]
            if scored:
                b.plot([h.epoch for h in scored], [h.validation_metric for h in scored], marker="o", label=r.rung)
    a.set(xlabel="epoch", ylabel="train loss", title="Training loss")
    b.set(xlabel="epoch", ylabel="validation metric", title="Validation")
    for ax in (a, b):
        ax.legend(fontsize=8) if ax.lines else ax.text(
            0.5, 0.5, "no fine-tuned rung", ha="center", transform=ax.transAxes
        )
    return save_figure(fig, path)


def _figure(draw, *args) -> Path | None:
    """A figure, or None (logged) when drawing it fails: a finished run never dies on a chart."""
    try:
        return draw(*args)
    except Exception as exc:  # any plotting error: the run's results stand
        log.warning("could not draw %s: %s", args[-1].name, exc)
        return None


@task(name="write-transfer-note")
def write_transfer_note(ladder: LadderResult, ctx: LadderContext) -> list[Path]:
    """transfer_note.md/.json, ladder_chart.png and learning_curves.png in the run directory."""
    curated, cfg, run_dir, trained, final = ctx.curated, ctx.cfg, ctx.run_dir, list(ladder.trained), ladder.final
    rows = POOL.read(curated, cfg.root) if ctx.evaluation.cross_validated else curated.read(cfg.root, "validation")
    context = {
        "evidence": ladder.evidence,
        "evaluation": ladder.evaluation,
        "plan": ladder.plan,
        "final": final,
        "diagnostics": diagnostics(trained, rows, ctx.labels),
        "latency": ladder.latency,
    }
    note = transfer_note(ladder.selection, trained, ladder.scratch, list(ladder.decisions), context, cfg)
    (run_dir / artifacts.TRANSFER_NOTE).write_text(json.dumps(note, indent=2, default=str), encoding="utf-8")
    (run_dir / artifacts.TRANSFER_NOTE_MD).write_text(_markdown(note), encoding="utf-8")
    figures = [
        _figure(plot_ladder, note, run_dir / artifacts.LADDER_CHART),
        _figure(plot_learning_curves, [*trained, final], run_dir / artifacts.LEARNING_CURVES),
    ]
    return [run_dir / artifacts.TRANSFER_NOTE, run_dir / artifacts.TRANSFER_NOTE_MD, *(f for f in figures if f)]
