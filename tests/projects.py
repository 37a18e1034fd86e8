"""A small ticket project the e2e tests run the real pipeline on: a git workspace with
generated tickets, and the settings for the tiny encoder and the frozen rung only."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from thaw.config import ThawConfig
from thaw.demo_data import generate_support_tickets

# serving cost timed on few rows: the suite checks it is measured and carried, not its figures
TEST_SERVING = {"latency_rows": 10, "latency_batch": 8}


def ticket_project(workspace: Path, encoder: Path, model: str, rows: int, seed: int, **sections: Any) -> dict[str, Any]:
    """Create ``workspace`` with ``rows`` generated tickets; return the config settings
    (``sections`` add or replace top-level sections, e.g. ``tracking`` or ``versioning``)."""
    (workspace / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    (workspace / "data" / "tickets.csv").write_text(generate_support_tickets(rows, seed=seed)[0], encoding="utf-8")
    sections["serving"] = {**TEST_SERVING, **sections.get("serving", {})}
    return {
        "model_name": model,
        "workspace": str(workspace),
        "data": {
            "train": str(workspace / "data" / "tickets.csv"),
            "text_column": "message",
            "label_column": "intent",
            "id_column": "ticket_id",
        },
        "backbone": {"name": "tiny", "path": str(encoder), "max_length": 48},
        "curation": {"expectations": {"min_rows": 50}},
        "training": {"head": {"c_grid": [100.0]}, "ladder": {"rungs": ["frozen"]}},
        **sections,
    }


def copy_version(cfg, model: str, source: str, **tag_overrides: str) -> str:
    """A new version of ``model`` with the files and lineage of ``source`` (as a second run
    of the same data would register), made challenger the way registration does it. It
    names ``source``'s run, whose logged inputs its data tags are read against."""
    from tasks.release.promotion import register_challenger
    from tasks.tracking.client import client_for
    from tasks.tracking.identity import acting_identity

    client = client_for(cfg)
    src = client.get_model_version(model, source)
    tags = {k: v for k, v in src.tags.items() if not k.startswith("thaw.approval")} | tag_overrides
    mv = client.create_model_version(model, source=f"models:/{model}/{source}", run_id=src.run_id, tags=tags)
    register_challenger(cfg, model, str(mv.version), acting_identity(cfg))
    return str(mv.version)


def pipeline_config(workspace: Path, encoder: Path, train: Path, **expect) -> ThawConfig:
    """Generated tickets in ``train``, the tiny encoder, the frozen and PEFT rungs."""
    return ThawConfig.model_validate(
        {
            "model_name": "tickets",
            "workspace": str(workspace),
            "data": {"train": str(train), "text_column": "message", "label_column": "intent", "id_column": "ticket_id"},
            "backbone": {"name": "tiny-test-encoder", "path": str(encoder), "max_length": 64},
            "curation": {"expectations": {"min_rows": 50, "min_examples_per_class": 3, **expect}},
            "serving": TEST_SERVING,
            "training": {
                "head": {"c_grid": [1.0], "max_iter": 300},
                "ladder": {"rungs": ["frozen", "peft"], "cv_repeats": 1},
            },
        }
    )


def approver_config(tmp_path: Path, cfg: ThawConfig) -> Path:
    """The approver's own config file: the model, the tracking server, and the backbone it trusts."""
    import yaml

    settings = {
        "model_name": cfg.model_name,
        "tracking": {"tracking_uri": cfg.tracking.tracking_uri},
        "backbone": {"name": cfg.backbone.name, "path": str(cfg.backbone.path)},
    }
    path = tmp_path / "approver.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def lineage_tags(cfg: ThawConfig, raw, curated) -> dict[str, str]:
    """The version tags the lineage re-check reads, for a raw and a curated DatasetVersion."""
    return {
        "thaw.dvc_remote": curated.remote,
        "thaw.raw.md5": raw.md5,
        "thaw.raw.policy": cfg.versioning.raw_policy,
        "thaw.raw.remote": raw.remote,
        **{f"thaw.raw.{s}.md5": f.md5 for s, f in raw.files.items()},
        **{f"thaw.curated.{s}.md5": f.md5 for s, f in curated.files.items()},
        **{f"thaw.curated.{s}.path": f.path for s, f in curated.files.items()},
    }


def altered_version(cfg: ThawConfig, model: str, source: str, alter, **tag_overrides: str) -> str:
    """A new version of ``model``: ``source``'s model files changed by ``alter(weights_dir)``,
    logged and registered as the pipeline registers (digest recorded), made challenger.
    Its run logs no dataset inputs, so its data tags (``source``'s, with ``tag_overrides``)
    are not read against any: a version registered outside thaw's pipeline."""
    import shutil
    import tempfile

    import mlflow

    from tasks.release.promotion import register_challenger
    from tasks.release.registration import _log_pyfunc, stored_model_digest
    from tasks.release.stored_model import MODEL_DIGEST_TAG, check_stored_files, verified_model_dir
    from tasks.tracking.client import client_for, scoped_tracking_uri
    from tasks.tracking.identity import acting_identity
    from tasks.tracking.runs import TrackingRun
    from thaw.tracking import tracking_uri

    client = client_for(cfg)
    src = client.get_model_version(model, source)
    weights = check_stored_files(verified_model_dir(cfg, model, source), model, source)
    with tempfile.TemporaryDirectory(dir=cfg.state_path) as tmp:
        work = Path(tmp) / weights.name
        shutil.copytree(weights, work)
        alter(work)
        run = client.create_run(client.get_run(src.run_id).info.experiment_id, run_name=f"{model}-altered")
        uri = tracking_uri(cfg)
        with scoped_tracking_uri(uri):
            model_uri = _log_pyfunc(TrackingRun(run.info.run_id, Path(tmp), uri, "test", "local"), work)
            tags = {k: v for k, v in src.tags.items() if not k.startswith("thaw.approval")} | tag_overrides
            tags[MODEL_DIGEST_TAG] = stored_model_digest(model_uri, cfg.state_path / "restore")
            mv = mlflow.register_model(model_uri, model, tags=tags)
        client.set_terminated(run.info.run_id)
    register_challenger(cfg, model, str(mv.version), acting_identity(cfg))
    return str(mv.version)


def reverse_labels(weights: Path) -> None:
    """Give every class another's name: the same scores, different answers."""
    import json

    labels = json.loads((weights / "labels.json").read_text(encoding="utf-8"))
    (weights / "labels.json").write_text(json.dumps(labels[::-1]), encoding="utf-8")


def dead_lock_holder(cfg: ThawConfig, model: str, holder: str, purpose: str) -> str:
    """A process that takes ``model``'s promotion lock as ``holder`` and is SIGKILLed
    holding it, its lease not yet out; returns its pid."""
    import os
    import sys

    code = (
        "import os, signal, sys; from tasks.release.promotion_lock import acquire; "
        "from thaw.config import ThawConfig; "
        "acquire(ThawConfig.model_validate_json(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]); "
        "print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, cfg.model_dump_json(), model, holder, purpose],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    return proc.stdout.split()[0]
