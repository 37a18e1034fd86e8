"""Promotion an auditor can follow, against a real MLflow tracking server on loopback:
approve, refuse, force, rollback, ledger, lineage re-verification, restore, serving."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.projects import ticket_project
from tests.servers import free_port, mlflow_server, running
from thaw.config import ThawConfig
from thaw.datasets import file_md5
from thaw.errors import UserError

pytestmark = pytest.mark.e2e
MODEL = "tickets"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_encoder, prefect_harness):
    """One pipeline run against a real tracking server, then extra versions of the same model."""
    from flows.pipeline import thaw_pipeline
    from tasks.registry import TrackingRun, register_model

    base = tmp_path_factory.mktemp("promotion")
    workspace = base / "project"
    with mlflow_server(base / "mlflow") as uri:
        cfg = ThawConfig.model_validate(
            ticket_project(workspace, tiny_encoder, MODEL, 400, 3, tracking={"tracking_uri": uri})
        )
        summary = json.loads(Path(thaw_pipeline(cfg)).read_text())
        run_id = summary["mlflow"]["run_id"]
        from tasks.registry import client_for

        client = client_for(cfg)
        tags = dict(client.get_model_version(MODEL, "1").tags)
        run = TrackingRun(run_id, cfg.state_path / "runs" / run_id, uri, tags["thaw.git_commit"], "test")

        def new_version() -> str:
            return register_model.fn(run, cfg, run.run_dir / "models" / "frozen", tags).version

        yield cfg, client, new_version, workspace, uri


def _ledger(cfg):
    from tasks.promotion import read_ledger

    return [(e["action"], e["version"]) for e in read_ledger(cfg, MODEL)]


def _champion(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_register_approve_refuse_force_rollback_and_the_ledger(registry):
    from tasks.promotion import approve, reject, rollback

    cfg, client, new_version, _, _ = registry
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
    with pytest.raises(UserError, match="no previous champion|no champion"):
        rollback(cfg, MODEL, "nothing to roll back")
    approve(cfg, MODEL, "1", "first model, reviewed")
    assert _champion(client) == "1"
    v2 = new_version()
    with pytest.raises(UserError, match="does not beat champion v1"):
        approve(cfg, MODEL, v2, "same model again")
    assert _champion(client) == "1"
    decision = approve(cfg, MODEL, v2, "incident 42: needs the new label set", force=True)
    assert decision.forced and _champion(client) == v2
    assert client.get_model_version(MODEL, v2).tags["thaw.approval.forced"] == "true"
    assert rollback(cfg, MODEL, "v2 misbehaves in production") == "1" and _champion(client) == "1"
    v3 = new_version()
    reject(cfg, MODEL, v3, "labels look wrong")
    with pytest.raises(UserError, match="was rejected|not the current challenger"):
        approve(cfg, MODEL, v3, "try anyway", force=True)
    with pytest.raises(UserError, match="has no version 99"):
        approve(cfg, MODEL, "99", "does not exist")
    assert _ledger(cfg) == [
        ("promote", "1"),
        ("refused", v2),
        ("promote", v2),
        ("rollback", "1"),
        ("reject", v3),
        ("refused", v3),
    ]
    mv = client.get_model_version(MODEL, v2)
    assert mv.tags["thaw.approval"] == "approved" and mv.tags["thaw.approval.by"]


def test_concurrent_approvals_leave_one_champion_and_every_record(registry):
    from tasks.promotion import approve

    cfg, client, new_version, _, _ = registry
    older, newer = new_version(), new_version()  # newer is the current challenger
    before = len(_ledger(cfg))
    outcomes = {}

    def go(version: str) -> None:
        try:
            outcomes[version] = approve(cfg, MODEL, version, f"approve {version}", force=True).promote
        except UserError as exc:
            outcomes[version] = str(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in (older, newer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes[newer] is True and "not the current challenger" in outcomes[older]
    assert _champion(client) == newer
    entries = _ledger(cfg)[before:]
    assert sorted(entries) == sorted([("promote", newer), ("refused", older)])
    from tasks.promotion import read_ledger

    seqs = [e["seq"] for e in read_ledger(cfg, MODEL)]
    assert seqs == list(range(1, len(seqs) + 1))  # no entry lost or overwritten


def test_restore_data_is_byte_identical_after_the_workspace_copy_is_gone(registry, tmp_path):
    from tasks.restore import restore_data

    cfg, client, _, workspace, _ = registry
    mv = client.get_model_version_by_alias(MODEL, "champion")
    shutil.rmtree(workspace / "datasets")
    shutil.rmtree(workspace / ".dvc" / "cache", ignore_errors=True)
    restored = restore_data(cfg, f"{MODEL}@champion", tmp_path / "restored")
    for split, path in restored.items():
        assert file_md5(path) == mv.tags[f"thaw.curated.{split}.md5"]


def test_champion_predicts_the_same_through_pyfunc_http_and_thaw_predict(registry, tmp_path):
    cfg, client, _, workspace, uri = registry
    texts = ["I lost my card yesterday", "where is my refund for order #123456", "the app crashes"]
    pd.DataFrame({"ticket_id": ["a", "b", "c"], "message": texts}).to_csv(tmp_path / "in.csv", index=False)
    env_uri = {"MLFLOW_TRACKING_URI": uri}
    # 1. thaw predict (CLI)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "thaw_cli",
            "predict",
            f"{MODEL}@champion",
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(tmp_path / "out.csv"),
            "--text-column",
            "message",
            "--id-column",
            "ticket_id",
            "--workspace",
            str(workspace),
            "--config",
            str(_write_cfg(tmp_path, uri)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    via_cli = pd.read_csv(tmp_path / "out.csv")["label"].tolist()
    # 2. mlflow.pyfunc.load_model in a fresh process
    code = (
        f"import json, mlflow.pyfunc, pandas as pd; m = mlflow.pyfunc.load_model('models:/{MODEL}@champion'); "
        f"print(json.dumps(m.predict(pd.DataFrame({{'text': {texts!r}}}))['label'].tolist()))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env_uri}
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    via_pyfunc = json.loads(fresh.stdout.strip().splitlines()[-1])
    # 3. the documented HTTP path: `thaw serve` (mlflow models serve on the pyfunc) on loopback
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "thaw_cli",
        "serve",
        f"{MODEL}@champion",
        "--port",
        str(port),
        "--workspace",
        str(workspace),
        "--config",
        str(_write_cfg(tmp_path, uri)),
    ]
    with running(cmd, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", timeout_s=180):
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            via_http = [row["label"] for row in json.loads(resp.read())["predictions"]]
    assert via_cli == via_pyfunc == via_http


def _write_cfg(tmp_path: Path, uri: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"model_name: {MODEL}\ntracking:\n  tracking_uri: {uri}\n", encoding="utf-8")
    return path


def test_promotion_refuses_when_a_recorded_digest_is_missing_from_the_remote(registry):
    from tasks.promotion import approve
    from tasks.restore import open_remote

    cfg, client, new_version, _, _ = registry
    version = new_version()
    tags = client.get_model_version(MODEL, version).tags
    remote = open_remote(cfg, tags["thaw.dvc_remote"])
    Path(remote.object_path(tags["thaw.curated.train.md5"])).unlink()
    with pytest.raises(UserError, match="lineage: train md5 .* is missing from the remote"):
        approve(cfg, MODEL, version, "looks fine", force=False)
