"""The curation report: every row accounted for (removed by stage and reason, or kept in a
split), PII by type, where the key came from, as JSON, markdown and flat metrics."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from thaw import artifacts
from thaw.config import ThawConfig

log = logging.getLogger(__name__)

SAMPLES_PER_REASON = 5


@dataclass
class RowAccounting:
    """Per-stage counts and (raw, to be scrubbed) samples of removed rows."""

    stages: list[dict] = field(default_factory=list)
    removed_samples: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    notes: dict = field(default_factory=dict)

    def record(
        self, stage: str, before: pd.DataFrame, removals: dict[str, list[int]], extra: dict | None = None
    ) -> None:
        removed = {reason: len(pos) for reason, pos in removals.items() if pos}
        for reason, positions in removals.items():
            if not positions:
                continue
            room = SAMPLES_PER_REASON - len(self.removed_samples[reason])
            for pos in positions[: max(room, 0)]:
                self.removed_samples[reason].append((before["id"].iat[pos], before["text"].iat[pos]))
        dropped = {p for pos in removals.values() for p in pos}
        entry = {"stage": stage, "rows_in": len(before), "rows_out": len(before) - len(dropped), "removed": removed}
        self.stages.append(entry | (extra or {}))


def publish_accounting(report: dict, run_dir: Path) -> Path:
    """Flat per-stage counts as a metrics file (for ``dvc metrics diff``) and a Prefect table."""
    metrics = {
        "rows": report["splits"],
        "pii_rows_changed": report["pii"]["rows_changed"],
        "pii_entities": report["pii"]["entities"],
        "pii_rows_per_s": report["pii"]["rows_per_s"],
        "removed": {},
    }
    for stage in report["stages"]:
        for reason, n in stage["removed"].items():
            metrics["removed"][f"{stage['stage']}:{reason}"] = n
    path = run_dir / artifacts.CURATION_METRICS
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    try:
        from prefect.artifacts import create_table_artifact

        table = [
            {
                "stage": s["stage"],
                "rows_in": s["rows_in"],
                "rows_out": s["rows_out"],
                "removed": ", ".join(f"{k}={v}" for k, v in s["removed"].items()) or "-",
            }
            for s in report["stages"]
        ]
        create_table_artifact(
            key="curation-accounting", table=table, description="Rows in/out and removals per curation stage"
        )
    except Exception as exc:  # outside a flow run there is nowhere to attach it; the file still exists
        log.debug("no Prefect table artifact: %s", exc)
    return path


def _safe_samples(values: list[str], detector, secret, entities) -> list[str]:
    """Report samples scrubbed like the data, then held to the residual check: what the
    check still flags is masked, so no sample can carry what a split could not."""
    from tasks.curation.expectations import mask_residual_pii, residual_pii_kinds
    from thaw.pii.detector import scrub_texts

    scrubbed = list(scrub_texts(values, detector, secret))
    return [mask_residual_pii(v) if residual_pii_kinds(v, entities) else v for v in scrubbed]


def build_report(
    accounting: RowAccounting, pii: dict, splits: dict[str, pd.DataFrame], detector, cfg: ThawConfig
) -> dict:
    """The accounting report. Samples of removed and changed rows (ids and texts) are
    scrubbed before they are kept; every input row is accounted for, removed or in a split."""
    stats, secret, entities = pii["stats"], pii["secret"], cfg.curation.pii.entities
    removed = []
    for reason, rows in sorted(accounting.removed_samples.items()):
        ids = _safe_samples([rid for rid, _ in rows], detector, secret, entities)
        texts = _safe_samples([t for _, t in rows], detector, secret, entities)
        removed += [{"reason": reason, "id": i, "text": t} for i, t in zip(ids, texts, strict=True)]
    changed = _safe_samples(
        [t for t in splits["train"]["text"] if "<" in t][:SAMPLES_PER_REASON], detector, secret, entities
    )
    inputs = {s["stage"].split(":")[0]: s["rows_in"] for s in accounting.stages if s["stage"].endswith(":scripts")}
    dropped = sum(sum(s["removed"].values()) for s in accounting.stages)
    kept = {s: len(f) for s, f in splits.items()}
    return {
        "accounting": {
            "input_rows": inputs,
            "removed": dropped,
            "kept": sum(kept.values()),
            "balanced": sum(inputs.values()) == dropped + sum(kept.values()),
        },
        "stages": accounting.stages,
        "notes": accounting.notes,
        "pii": {
            "entities": dict(stats.entities),
            "rows_changed": stats.rows_changed,
            "rows_seen": stats.rows_seen,
            "rows_per_s": round(pii["rows_per_s"], 1),
            "processes": stats.processes,
            "ner_rows": stats.ner_rows,
            "secret_source": secret.source.split(":")[0],
            "secret_fingerprint": pii["fingerprint"],
            "reproducible": secret.source != "ephemeral",
            "entity_types": list(entities),
        },
        "dedup": cfg.curation.dedup.model_dump(mode="json"),
        "splits": kept,
        "labels": dict(Counter(splits["train"]["label"])),
        "samples": {"removed": removed, "changed": changed},
    }


def script_notes(report: dict) -> list[str]:
    """Markdown lines on rows in scripts the PII detector does not cover (a warning when
    they were kept: names in them may have passed unseen)."""
    lines = []
    for split, note in sorted(report.get("notes", {}).get("uncovered_scripts", {}).items()):
        found = ", ".join(f"{script} {n}" for script, n in note["scripts"].items())
        if note["policy"] == "keep":
            lines.append(
                f"- **warning**: {split}: {note['rows']} rows kept with letters the PII detector does not cover "
                f"({found}); personal data in them may remain (`curation.pii.uncovered_scripts: keep`)"
            )
        else:
            lines.append(
                f"- {split}: {note['rows']} rows dropped for letters the PII detector does not cover ({found})"
            )
    return lines


def named_spellings(group: dict[str, dict], text: Callable[[str], str] = str) -> str:
    """One group of case variants for a message: each label (masked like any label in a
    message, cut at 60 characters) with its rows and where it is first found, each
    passed through ``text`` (``md_text`` for Markdown)."""
    from tasks.curation.expectations import mask_residual_pii

    return " and ".join(
        f"{text(repr(mask_residual_pii(label)[:60]))} ({s['rows']} rows, first at {text(s['first'])})"
        for label, s in group.items()
    )


def label_notes(report: dict) -> list[str]:
    """Markdown lines on labels: how many were respelled to one form (whitespace, Unicode
    composition), and a warning for each group that differs only in case."""
    from thaw.shown import md_text

    notes = report.get("notes", {})
    respelled = {split: n for split, n in notes.get("labels_respelled", {}).items() if n}
    lines = []
    if respelled:
        counts = ", ".join(f"{split} {n}" for split, n in respelled.items())
        lines.append(f"- labels given one spelling (whitespace, Unicode composition): {counts} rows")
    for group in notes.get("label_case_variants", []):
        lines.append(
            "- **warning**: labels that differ only in case are trained as separate classes: "
            + named_spellings(group, md_text)
        )
    unnamed = notes.get("label_case_variant_groups", 0) - len(notes.get("label_case_variants", []))
    if unnamed > 0:
        lines.append(f"- **warning**: and {unnamed} more groups of labels that differ only in case")
    return lines


def curation_markdown(report: dict) -> str:
    """The curation report for a reader: rows in and out by reason, PII by type, where the
    PII key came from and what that means for re-deriving the data (the JSON has it all)."""
    acc, pii = report["accounting"], report["pii"]
    fingerprint = f"fingerprint `{pii['secret_fingerprint'][:16]}`"
    key = (
        f"the PII key came from **{pii['secret_source']}** ({fingerprint}): the same raw data and key give the "
        "same curated data."
        if pii["reproducible"]
        else f"the PII key was **ephemeral** ({fingerprint}; generated for this run and not kept), so the curated "
        "data **cannot be re-derived** from the raw data; it can only be restored from DVC (`thaw restore-data`). "
        "Set `THAW_PII_SECRET` for reproducible curation."
    )
    lines = [
        "# Curation report",
        "",
        f"- input rows: {', '.join(f'{k} {v}' for k, v in acc['input_rows'].items())}; kept {acc['kept']}, "
        f"removed {acc['removed']}; every row accounted for: **{'yes' if acc['balanced'] else 'NO'}**",
        f"- splits: {', '.join(f'{k} {v}' for k, v in report['splits'].items())}; {len(report['labels'])} labels",
        f"- PII: {pii['rows_changed']} of {pii['rows_seen']} rows changed; types scrubbed: "
        f"{', '.join(pii['entity_types'])}",
        f"- {key}",
        *script_notes(report),
        *label_notes(report),
        "",
        "## Rows in and out by stage",
        "",
        "| stage | rows in | rows out | removed (reason = rows) |",
        "|---|---|---|---|",
        *[
            f"| {s['stage']} | {s['rows_in']} | {s['rows_out']} | "
            f"{', '.join(f'{k} = {v}' for k, v in s['removed'].items()) or '-'} |"
            for s in report["stages"]
        ],
        "",
        "## PII found, by type",
        "",
        "| type | spans replaced |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(pii["entities"].items(), key=lambda kv: -kv[1])],
        *([] if pii["entities"] else ["| (none) | 0 |"]),
        "",
        "## Near-duplicate settings",
        "",
        ", ".join(f"{k} = {v}" for k, v in sorted(report["dedup"].items())),
        "",
        "Samples of removed and changed rows (scrubbed) are in `curation_report.json`.",
        "",
    ]
    return "\n".join(lines)
