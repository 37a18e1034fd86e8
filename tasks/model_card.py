"""The model card of a registered version: data, rung, metrics with intervals, known
limits and lineage, as markdown on the run and as the version's description."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from tasks.registry import RegisteredVersion, TrackingRun, client_for
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig


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


def build_model_card(
    cfg: ThawConfig,
    registered: RegisteredVersion,
    ladder,
    evaluation,
    versioned: DatasetVersion,
    curation_report: Path,
    git_commit: str,
) -> str:
    """Markdown model card of one registered version."""
    sel = ladder.selected
    report = json.loads(curation_report.read_text(encoding="utf-8"))
    weak = ", ".join(f"{k} ({v:.2f})" for k, v in weakest_labels(evaluation.report_path))
    meta = json.loads((sel.model_dir / "model.json").read_text(encoding="utf-8"))
    lines = [
        f"# {registered.name} v{registered.version}",
        "",
        f"Text classifier over {len(report['labels'])} labels, adapted from `{meta['backbone']['name']}` "
        f"by the **{sel.rung}** rung ({sel.details.get('method')}).",
        "",
        "## Data",
        "",
        "| split | rows | md5 (DVC) | path |",
        "|---|---|---|---|",
        *[f"| {s} | {report['splits'][s]} | `{f.md5}` | `{f.path}` |" for s, f in sorted(versioned.files.items())],
        "",
        f"DVC remote: `{versioned.remote}`. PII scrubbed ({', '.join(report['pii']['entity_types'])}); "
        f"{report['pii']['rows_changed']} training-pool rows changed. "
        "Near duplicates of evaluation rows removed from train.",
        "",
        "## Metrics",
        "",
        f"- test accuracy {_interval(evaluation.metrics, 'accuracy')} (95% Wilson interval)",
        f"- test macro-F1 {_interval(evaluation.metrics, 'macro_f1')} (95% bootstrap interval)",
        f"- validation {cfg.training.ladder.metric} of each rung: "
        + ", ".join(
            f"{r.rung} {r.validation[cfg.training.ladder.metric]:.4f}" for r in [ladder.scratch, *ladder.trained]
        ),
        f"- why this rung: {ladder.selection.reason}",
        "",
        "## Known limits",
        "",
        f"- weakest labels on test (F1): {weak}",
        f"- inputs longer than {cfg.backbone.max_length} tokens are truncated; "
        "English only (the PII model is en_core_web_sm)",
        "- trained on scrubbed text: placeholders like `<PERSON_1a2b3c>` are what it saw for personal data",
        f"- negative transfer vs the TF-IDF baseline: {'YES' if ladder.selection.negative_transfer else 'no'}",
        "",
        "## Lineage",
        "",
        f"- MLflow run `{registered.run_id}`; git commit `{git_commit}`; config digest `{cfg.digest()[:16]}`",
        f"- backbone `{meta['backbone']['name']}` from `{meta['backbone']['source']}`, "
        f"revision `{meta['backbone']['revision'][:16]}`",
        f"- reproduce the data: `thaw restore-data {registered.name}/{registered.version} --to DIR`",
        "",
    ]
    return "\n".join(lines)


@task(name="publish-model-card")
def publish_model_card(
    run: TrackingRun,
    cfg: ThawConfig,
    registered: RegisteredVersion,
    ladder,
    evaluation,
    versioned: DatasetVersion,
    curation_report: Path,
) -> Path:
    """Write the card, log it on the run and set it as the version's description."""
    client = client_for(cfg)
    commit = client.get_run(run.run_id).data.tags.get("thaw.git_commit", "unknown")
    card = build_model_card(cfg, registered, ladder, evaluation, versioned, curation_report, commit)
    path = run.run_dir / f"model_card_v{registered.version}.md"
    path.write_text(card, encoding="utf-8")
    client.log_artifact(run.run_id, str(path))
    client.update_model_version(registered.name, registered.version, description=card)
    return path
