"""The shared tracking server of infra/ runs MLflow's basic-auth app: promotion needs an
authenticated identity with MANAGE on the model, and the ledger records who it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.projects import ticket_project
from tests.servers import ADMIN, mlflow_auth_server
from thaw.config import ThawConfig

pytestmark = pytest.mark.e2e
MODEL = "auth-tickets"


def _thaw(args: list[str], config: Path, credentials: tuple[str, str] | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    if credentials:
        env |= {"MLFLOW_TRACKING_USERNAME": credentials[0], "MLFLOW_TRACKING_PASSWORD": credentials[1]}
    return subprocess.run(
        [sys.executable, "-m", "thaw_cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_promotion_needs_an_authenticated_user_with_manage_permission(
    tmp_path, tiny_encoder, prefect_harness, monkeypatch
):
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    from flows.pipeline import thaw_pipeline
    from tasks.promotion import read_ledger

    workspace = tmp_path / "project"
    with mlflow_auth_server(tmp_path / "mlflow") as uri:
        settings = ticket_project(workspace, tiny_encoder, MODEL, 300, 9, tracking={"tracking_uri": uri})
        config = tmp_path / "thaw.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        cfg = ThawConfig.model_validate(settings)
        thaw_pipeline(cfg)  # the pipeline's own account registers the challenger
        accounts = AuthServiceClient(uri)
        accounts.create_user("alice", "alice-password-1")
        accounts.create_user("bob", "bob-password-1")
        accounts.grant_user_permission("alice", "registered_model", MODEL, "MANAGE")
        registry = MlflowClient(uri, registry_uri=uri)

        nobody = _thaw(["approve", MODEL, "1", "--reason", "ship it"], config, None)
        assert nobody.returncode == 2 and "refused a request without credentials" in nobody.stderr
        wrong = _thaw(["approve", MODEL, "1", "--reason", "ship it"], config, ("alice", "not-her-password"))
        assert wrong.returncode == 2 and "refused the credentials of 'alice'" in wrong.stderr
        bob = _thaw(["approve", MODEL, "1", "--reason", "ship it"], config, ("bob", "bob-password-1"))
        assert bob.returncode == 2 and "denied bob the action" in bob.stderr
        for refused in (nobody, wrong, bob):
            assert "Traceback" not in refused.stderr
        assert "champion" not in registry.get_registered_model(MODEL).aliases

        alice = _thaw(["approve", MODEL, "1", "--reason", "ship it"], config, ("alice", "alice-password-1"))
        assert alice.returncode == 0, alice.stderr[-2000:]
        assert registry.get_registered_model(MODEL).aliases["champion"] == "1"
        promoted = [e for e in read_ledger(cfg, MODEL) if e["action"] == "promote"]
        assert [(e["version"], e["by"]) for e in promoted] == [("1", "alice")]
