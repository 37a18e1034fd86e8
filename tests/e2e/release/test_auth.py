"""The shared tracking server of infra/ runs MLflow's basic-auth app: promotion needs an
authenticated identity with MANAGE on the model, and the ledger records who it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.projects import ticket_project
from tests.servers import ADMIN, cheap_login, mlflow_auth_server
from thaw.config import ThawConfig

pytestmark = pytest.mark.e2e
MODEL = "auth-tickets"
ROOT = Path(__file__).resolve().parents[3]


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


def _python(code: str, settings: dict, model: str, credentials, extra_env: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env |= {"MLFLOW_TRACKING_USERNAME": credentials[0], "MLFLOW_TRACKING_PASSWORD": credentials[1]}
    env |= {"PYTHONPATH": str(ROOT), **(extra_env or {})}
    prelude = "import sys; from thaw.config import ThawConfig; CFG = ThawConfig.model_validate_json(sys.argv[1])\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code, json.dumps(settings), model],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def test_promotion_needs_an_authenticated_user_with_manage_permission(
    tmp_path, tiny_encoder, prefect_harness, monkeypatch
):
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    from flows.pipeline import thaw_pipeline
    from tasks.release.ledger import ledger_report

    workspace = tmp_path / "project"
    with mlflow_auth_server(tmp_path / "mlflow") as uri:
        settings = ticket_project(
            workspace,
            tiny_encoder,
            MODEL,
            300,
            9,
            tracking={"tracking_uri": uri},
            promotion={"lock_lease_seconds": 8},  # basic auth hashes every request: 3 s flaked
        )
        config = tmp_path / "thaw.yaml"
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        cfg = ThawConfig.model_validate(settings)
        thaw_pipeline(cfg)  # the pipeline's own account registers the challenger
        accounts = AuthServiceClient(uri)
        for name in ("alice", "bob"):
            accounts.create_user(name, f"{name}-password-1")
            cheap_login(tmp_path / "mlflow", name, f"{name}-password-1")
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
        report = ledger_report(registry, MODEL, None)
        approvals = [e for e in report.entries if e["action"] == "approve" and e["phase"] == "intent"]
        assert [(e["version"], e["by"], e["identity"]) for e in approvals] == [
            ("1", "alice", "authenticated by the MLflow tracking server; unsigned: no approvers file")
        ]
        assert report.ok and report.champion == "1"

        # alice's process dies holding the lock, after its intent; carol, another approver
        # who may not touch alice's lock, takes over once the lease runs out and completes it
        copy = "from tests.projects import copy_version; copy_version(CFG, sys.argv[2], '1')"
        _python(copy, settings, MODEL, ADMIN)
        killed = _python(
            "from tasks.release.promotion import approve; approve(CFG, sys.argv[2], '2', 'alice ships v2', force=True)",
            settings,
            MODEL,
            ("alice", "alice-password-1"),
            {"THAW_TEST_KILL_AT": "approve:after-intent"},
        )
        assert killed.returncode == -9, killed.stderr[-2000:]
        accounts.create_user("carol", "carol-password-1")
        cheap_login(tmp_path / "mlflow", "carol", "carol-password-1")
        accounts.grant_user_permission("carol", "registered_model", MODEL, "MANAGE")
        carol = _thaw(
            ["approve", MODEL, "2", "--reason", "carol ships v2", "--force"], config, ("carol", "carol-password-1")
        )
        assert carol.returncode == 0, carol.stderr[-2000:]
        report = ledger_report(registry, MODEL, None)
        tail = [(e["action"], e["phase"], e["by"], e.get("outcome")) for e in report.entries[-5:]]
        assert tail == [
            ("approve", "intent", "alice", None),  # the intent alice wrote before she died
            ("break-lock", "record", "carol", None),
            ("approve", "completion", "carol", "not-applied"),  # alice's, completed by carol
            ("approve", "intent", "carol", None),
            ("approve", "completion", "carol", "applied"),
        ]
        assert report.ok and report.champion == "2" == registry.get_registered_model(MODEL).aliases["champion"]

        # an answer typed into the Prefect form is only a request under the worker's account;
        # the approval is alice's, authenticated, and cites the request
        _python(copy, settings, MODEL, ADMIN)
        asked = _python(
            "from tasks.release.promotion import request_approval; "
            "request_approval(CFG, sys.argv[2], '3', True, 'looks good to me', 'mallory')",
            settings,
            MODEL,
            ADMIN,
        )
        assert asked.returncode == 0, asked.stderr[-2000:]
        alice = _thaw(["approve", MODEL, "3", "--reason", "reviewed", "--force"], config, ("alice", "alice-password-1"))
        assert alice.returncode == 0, alice.stderr[-2000:]
        entries = ledger_report(registry, MODEL, None).entries
        request = next(e for e in entries if e["action"] == "request")
        assert (request["by"], request["claimed_by"], request["requested"]) == (ADMIN[0], "mallory", "approve")
        approval = [e for e in entries if e["action"] == "approve" and e["phase"] == "intent"][-1]
        assert (approval["by"], approval["request"]) == ("alice", request["op"])
