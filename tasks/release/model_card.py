"""The model card of a registered version: data, rung, metrics with intervals, known
limits and lineage, as markdown on the run and as the version's description."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task

from tasks.curation.report import label_notes, script_notes
from tasks.ladder.transfer_note import scratch_ahead_line, serving_cost_lines
from tasks.release.trained_run import TrainedRun
from tasks.tracking.client import RegisteredVersion, client_for
from tasks.tracking.links import links_markdown
from thaw import artifacts
from thaw.shown import md_code, md_text

if TYPE_CHECKING:
    from thaw.modeling import BackboneRef


def _interval(m: dict, key: str) -> str:
    return f"{m[key]:.4f} [{m[key + '_low']:.4f}, {m[key + '_high']:.4f}]"


def weakest_labels(report_path: Path, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` labels with the lowest test F1 (from the per-class report)."""
    per_class = json.loads(report_path.read_text(encoding="utf-8"))["per_class"]
    scores = [
        (k, v["f1-score"])
        for k, v in per_class.items()
        if isinstance(v, dict) and "support" in v and k not in ("macro avg", "weighted avg", "micro avg")
    ]
    return sorted(scores, key=lambda kv: kv[1])[:n]


def onnx_lines(onnx: dict | None) -> list[str]:
    """What serves the model: its ONNX artifact and why that one, or PyTorch."""
    if onnx is None:
        return ["- served by PyTorch (no ONNX artifact: `serving.onnx` is off)"]
    if onnx.get("file") is None:
        return [f"- served by PyTorch: {onnx['reason']}"]
    return [
        f"- served by ONNX Runtime, **{onnx['variant']}** (`onnx/{onnx['file']}`, sha256 `{onnx['sha256'][:16]}`): "
        f"{onnx['reason']}; test accuracy PyTorch {onnx['accuracy_torch']:.4f}, ONNX fp32 {onnx['accuracy_fp32']:.4f} "
        f"(agreement {onnx['agreement_fp32']:.2%}), int8 {onnx['accuracy_int8']:.4f} "
        f"(agreement {onnx['agreement_int8']:.2%}) on {onnx['rows']} rows"
    ]


def backbone_words(backbone: BackboneRef) -> str:
    """The backbone as the card names it: its name, source and revision as code spans, one
    line each (a local backbone's name is a path, which may hold a backtick or a newline)."""
    name, source, revision = md_code(backbone.name, 200), md_code(backbone.source, 300), md_code(backbone.revision[:16])
    return f"{name} from {source}, revision {revision}"


def build_model_card(trained: TrainedRun, registered: RegisteredVersion, experiment_id: str) -> str:
    """Markdown model card of one registered version."""
    cfg, ladder, evaluation, versioned = trained.cfg, trained.ladder, trained.tested, trained.versioned
    sel = ladder.selected
    report = json.loads(trained.curated.report_path.read_text(encoding="utf-8"))
    weak = ", ".join(f"{md_text(k, 80)} ({v:.2f})" for k, v in weakest_labels(evaluation.report_path))
    level = f"{cfg.training.confidence_level:.0%}"
    near = (
        "Near duplicates of evaluation rows removed from train."
        if cfg.curation.dedup.near_duplicates
        else "Exact duplicates of evaluation rows removed from train (near-duplicate removal was off)."
    )
    lines = [
        f"# {registered.name} v{registered.version}",
        "",
        f"Text classifier over {len(report['labels'])} labels, adapted from {md_code(ladder.backbone.name, 200)} "
        f"by the **{sel.rung}** rung ({sel.details.method}).",
        "",
        "## Data",
        "",
        "| split | rows | md5 (DVC) | path |",
        "|---|---|---|---|",
        *[
            f"| {s} | {report['splits'][s]} | `{f.md5}` | {md_code(f.path, 300)} |"
            for s, f in sorted(versioned.files.items())
        ],
        "",
        f"DVC remote: {md_code(versioned.remote, 300)}. PII scrubbed ({', '.join(report['pii']['entity_types'])}); "
        f"{report['pii']['rows_changed']} training-pool rows changed. {near}",
        "",
        "## Metrics",
        "",
        f"- test accuracy {_interval(evaluation.metrics, 'accuracy')} ({level} Wilson interval)",
        f"- test macro-F1 {_interval(evaluation.metrics, 'macro_f1')} ({level} bootstrap interval)",
        f"- validation {cfg.training.ladder.metric} of each rung: "
        + ", ".join(
            f"{r.rung} {r.validation[cfg.training.ladder.metric]:.4f}" for r in [ladder.scratch, *ladder.trained]
        ),
        f"- why this rung: {ladder.selection.reason}",
        f"- rungs scored by {ladder.evaluation.mode} ({ladder.evaluation.reason}); the decision table suggested "
        f"**{ladder.plan.suggestion}** first",
        f"- the registered weights learned from {' + '.join(ladder.selected.details.trained_on)}",
        "",
        *onnx_lines(trained.onnx),
        *serving_cost_lines(
            {
                "latency_budget_ms": cfg.serving.latency_budget_ms,
                "over_budget": ladder.selection.over_budget,
                "by_rung": ladder.latency,
            }
        ),
        "## Known limits",
        "",
        f"- weakest labels on test (F1): {weak}",
        f"- inputs longer than {cfg.backbone.max_length} tokens are truncated; "
        f"English only (the PII model is {cfg.curation.pii.spacy_model})",
        "- trained on scrubbed text: entity types like `<PERSON>` are what it saw for personal data, and what it "
        "is served (the model scrubs its input with the same detector); names the detector takes for people, "
        "products among them, read as `<PERSON>` too",
        *[line for line in [*script_notes(report), *label_notes(report)] if "warning" in line],
        f"- negative transfer vs the TF-IDF baseline: {'YES' if ladder.selection.negative_transfer else 'no'}",
        *(
            [f"- {scratch_ahead_line(asdict(ladder.selection.scratch_ahead), ladder.evaluation.mode)}"]
            if ladder.selection.scratch_ahead
            else []
        ),
        "",
        "## Lineage",
        "",
        links_markdown(
            cfg,
            trained.run.git_commit,
            trained.run.flow_run_id,
            run=(experiment_id, registered.run_id),
            version=(registered.name, registered.version),
        ),
        f"- config digest `{cfg.digest()[:16]}` (the config is `config.yaml` in the run's artifacts)",
        f"- backbone {backbone_words(ladder.backbone)}",
        f"- reproduce the data: `thaw restore-data {registered.name}/{registered.version} --to DIR`",
        "",
    ]
    return "\n".join(lines)


@task(name="publish-model-card")
def publish_model_card(trained: TrainedRun, registered: RegisteredVersion) -> Path:
    """Write the card, log it on the run and set it as the version's description."""
    run = trained.run
    client = client_for(trained.cfg)
    experiment = client.get_run(run.run_id).info.experiment_id
    card = build_model_card(trained, registered, experiment)
    path = run.run_dir / artifacts.model_card(registered.version)
    path.write_text(card, encoding="utf-8")
    client.log_artifact(run.run_id, str(path))
    from tasks.release.ledger import APPROVAL_SECTION

    before = client.get_model_version(registered.name, registered.version).description or ""
    history = APPROVAL_SECTION + before.split(APPROVAL_SECTION, 1)[1] if APPROVAL_SECTION in before else ""
    client.update_model_version(registered.name, registered.version, description=card + history)
    return path
