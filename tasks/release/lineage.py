"""Lineage: what a model version records about its data, code and backbone, and how
to read it back (``thaw lineage``)."""

from __future__ import annotations

import re
from typing import Any

from tasks.release.ledger import ledger_report
from tasks.release.trained_run import TrainedRun
from tasks.tracking.client import client_for, resolve_version
from tasks.tracking.dataset_inputs import logged_facts, tag_disagreements
from tasks.tracking.identity import team_approvers
from tasks.tracking.run_record import read_run_record
from tasks.versioning.restore import NO_INPUTS
from thaw import artifacts
from thaw.approval_record import APPROVAL_TAG
from thaw.config import ThawConfig
from thaw.parse import json_value
from thaw.rungs import TrainedRung
from thaw.tracking import tracking_uri


def run_params(cfg: ThawConfig, selected: TrainedRung) -> dict[str, Any]:
    """The parameters worth seeing on the MLflow run page."""
    d = cfg.curation.dedup
    return {
        "rung": selected.rung,
        "backbone": cfg.backbone.name,
        "pooling": cfg.backbone.pooling,
        "max_length": cfg.backbone.max_length,
        "seed": cfg.training.seed,
        "dedup.shingle_size": d.shingle_size,
        "dedup.num_perm": d.num_perm,
        "dedup.threshold": d.threshold,
        "dedup.label_conflicts": d.label_conflicts,
        "pii.entities": ",".join(cfg.curation.pii.entities),
        "rung.method": selected.details.method,
        "rung.frozen": selected.details.frozen,
        "rung.trainable_fraction_of_backbone": selected.details.trainable_fraction_of_backbone,
        **{f"rung.{k}": v for k, v in selected.details.settings.items()},
        **{
            f"rung.{k}": getattr(selected.details, k)
            for k in (
                "epochs_run",
                "epochs_within_budget",
                "best_epoch",
                "resumed_from_epoch",
                "train_seconds",
                "processes",
            )
            if getattr(selected.details, k) is not None
        },
    }


def model_version_tags(trained: TrainedRun) -> dict[str, str]:
    """Tags put on the registered version: enough to trace it without opening the run."""
    run, cfg, raw, curated, ladder = trained.run, trained.cfg, trained.raw, trained.versioned, trained.ladder
    selected = ladder.selected
    tags = {
        "thaw.run_id": run.run_id,
        "thaw.rung": selected.rung,
        "thaw.prefect_flow_run_id": run.flow_run_id,
        "thaw.git_commit": run.git_commit,
        "thaw.config_digest": cfg.digest(),
        "thaw.backbone.name": ladder.backbone.name,
        "thaw.backbone.source": ladder.backbone.source,
        "thaw.backbone.revision": ladder.backbone.revision,
        "thaw.dvc_remote": curated.remote,
        "thaw.raw.dvc_file": raw.dvc_file,
        "thaw.raw.md5": raw.md5,
        "thaw.raw.policy": cfg.versioning.raw_policy,
        "thaw.raw.remote": raw.remote,
        # each input's own bytes inside data.dvc: which file a split was read from
        **{f"thaw.raw.{split}.md5": f.md5 for split, f in raw.files.items()},
        **{f"thaw.raw.{split}.path": f.path for split, f in raw.files.items()},
        "thaw.columns.text": cfg.data.text_column,
        "thaw.columns.label": cfg.data.label_column,
        "thaw.columns.id": cfg.data.columns.id_name,
        "thaw.test_accuracy": f"{trained.tested.metrics['accuracy']:.4f}",
        "thaw.test_macro_f1": f"{trained.tested.metrics['macro_f1']:.4f}",
        "thaw.transfer.method": selected.details.method,
        "thaw.transfer.trainable_fraction": f"{selected.details.trainable_fraction_of_backbone:.6f}",
        "thaw.transfer.reason": ladder.selection.reason[:500],
        "thaw.transfer.negative_transfer": str(ladder.selection.negative_transfer).lower(),
        "thaw.transfer.rungs_trained": ",".join(r.rung for r in ladder.trained),
        "thaw.transfer.first_move_suggested": ladder.plan.suggestion,
        "thaw.transfer.scored_by": ladder.evaluation.mode,
        "thaw.transfer.trained_on": "+".join(selected.details.trained_on),
        **serving_tags(ladder.latency.get("served") or ladder.latency.get("registered")),
        "thaw.serving.engine": (trained.onnx or {}).get("variant")
        and f"onnxruntime {trained.onnx['variant']}"
        or "pytorch",
    }
    for split, f in curated.files.items():
        tags[f"thaw.curated.{split}.md5"] = f.md5
        tags[f"thaw.curated.{split}.path"] = f.path
    return tags


SERVING_FIELDS = ("p50_ms", "p95_ms", "p99_ms", "batch", "batch_p95_ms", "rows_per_s", "rss_mb", "model_mb")


def serving_tags(profile: dict | None) -> dict[str, str]:
    """The registered model's serving cost as version tags (``thaw.serving.*``)."""
    if not profile:
        return {}
    tags = {f"thaw.serving.{k}": f"{profile[k]:g}" for k in SERVING_FIELDS if isinstance(profile.get(k), (int, float))}
    return tags | {"thaw.serving.device": f"{profile['device']} ({profile['precision']})"}


def serving_cost(tags: dict[str, str]) -> dict[str, float | str]:
    """The serving cost read back from version tags: numbers only (a tag anyone with MANAGE
    can edit is shown, never trusted as anything but a number), the device as plain text."""
    import math

    out: dict[str, float | str] = {}
    engine = tags.get("thaw.serving.engine", "")
    if engine in ("pytorch", "onnxruntime int8", "onnxruntime fp32"):
        out["engine"] = engine
    for k in SERVING_FIELDS:
        try:
            value = float(tags.get(f"thaw.serving.{k}", ""))
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            out[k] = value
    device = tags.get("thaw.serving.device", "")
    if out and re.fullmatch(r"[a-z0-9:]{1,20} \([a-z0-9_ -]{1,40}\)", device):
        out["device"] = device
    return out


def describe_lineage(cfg: ThawConfig, ref: str) -> dict[str, Any]:
    """Model version -> run -> flow run -> datasets (md5s, DVC remote) -> commit, config, backbone."""
    mv = resolve_version(cfg, ref)
    client = client_for(cfg)
    run = client.get_run(mv.run_id)
    tags = mv.tags
    record = read_run_record(client, run, tags)  # what the run logged, not what a tag says now
    ledger = ledger_report(client, mv.name, team_approvers(cfg))
    decided = ledger.decision(mv.version)  # the approval the ledger records, not what a tag says now
    datasets = [
        {
            "name": d.dataset.name,
            "digest": d.dataset.digest,
            "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), ""),
            "source": _dataset_source(d.dataset.source),
        }
        for d in run.inputs.dataset_inputs
    ]
    aliases = list(getattr(mv, "aliases", []))
    return {
        "model": {
            "name": mv.name,
            "version": mv.version,
            "aliases": aliases,
            "approval": decided.state if decided else "",
        },
        "run": {
            "id": mv.run_id,
            "status": run.info.status,
            "experiment_id": run.info.experiment_id,
            "tracking_uri": tracking_uri(cfg),
        },
        "prefect_flow_run_id": tags.get("thaw.prefect_flow_run_id", ""),
        "data": {
            "raw": {
                "dvc_file": tags.get("thaw.raw.dvc_file"),
                "md5": tags.get("thaw.raw.md5"),
                "policy": tags.get("thaw.raw.policy", "same_remote"),
                "remote": tags.get("thaw.raw.remote", tags.get("thaw.dvc_remote")),
            },
            "curated": {
                s: {"path": tags.get(f"thaw.curated.{s}.path"), "md5": tags.get(f"thaw.curated.{s}.md5")}
                for s in ("train", "validation", "test")
                if f"thaw.curated.{s}.md5" in tags
            },
            "dvc_remote": tags.get("thaw.dvc_remote"),
            "mlflow_dataset_inputs": datasets,
        },
        "git_commit": tags.get("thaw.git_commit"),  # of the workspace: its config and data files
        # the code that trained it: thaw's version and the commit of its checkout ("unknown"
        # for an installed thaw, whose version then says it)
        "code": {"thaw_version": run.data.tags.get("thaw.version"), "commit": run.data.tags.get("thaw.code_commit")},
        "config_digest": tags.get("thaw.config_digest"),
        "backbone": {
            "name": tags.get("thaw.backbone.name"),
            "source": tags.get("thaw.backbone.source"),
            "revision": tags.get("thaw.backbone.revision"),
        },
        "rung": record.shown(tags, "thaw.rung"),
        "test": {
            "accuracy": record.shown(tags, "thaw.test_accuracy"),
            "macro_f1": record.shown(tags, "thaw.test_macro_f1"),
        },
        "transfer": {k.removeprefix("thaw.transfer."): v for k, v in tags.items() if k.startswith("thaw.transfer.")}
        | {"method": record.shown(tags, "thaw.transfer.method")},
        "serving": serving_cost(tags),
        "approval": {
            k.removeprefix(f"{APPROVAL_TAG}.") if k != APPROVAL_TAG else "state": v
            for k, v in (decided.tags() if decided else {}).items()
        },
        "reports": {name: f"{run.info.artifact_uri}/{name}" for name in _report_names(client, mv.run_id)},
        # an alias moved or a ledger entry edited outside thaw: shown wherever lineage is
        "ledger_problems": list(ledger.problems),
        # a data tag that no longer says what the run logged (its inputs cannot be edited)
        "tag_problems": tag_disagreements(tags, logged := logged_facts(run.inputs.dataset_inputs))
        + ([] if logged else [NO_INPUTS]),
        # a rung or test score tag that no longer says what the run logged (shown: the run's)
        "record_problems": list(record.problems),
    }


def _dataset_source(text: str) -> Any:
    """A logged dataset input's source as MLflow writes it (JSON), or, when something else
    logged one that is not, its text: anyone who can write to the run can log an input."""
    try:
        return json_value(text)
    except ValueError:
        return text[:2000]


def _report_names(client, run_id: str) -> list[str]:
    """The run's report artifacts an auditor opens (curation, transfer note, card, docs)."""
    names = {a.path for a in client.list_artifacts(run_id)}
    return sorted(n for n in names if n in artifacts.AUDIT_REPORTS or n.startswith(artifacts.MODEL_CARD_PREFIX))
