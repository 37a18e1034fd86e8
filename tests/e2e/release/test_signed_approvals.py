"""Signed approvals, as an insider and as a team works, through the CLI, against the
embedded store and a basic-auth tracking server.

The team's approvers file lists the scheduled worker (may register), alice (approve,
reject, rollback, acknowledge), bob (approve, force) and carol (approve, force).
mallory holds MANAGE on the model (in the basic-auth case) but no listed key. Both stores
see the refusals and the forgery; co-signing, acknowledging and rolling back run on the
server, as a team works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.projects import approver_config, copy_version, ticket_project
from tests.servers import ADMIN, cheap_login, mlflow_auth_server
from thaw.config import ThawConfig

pytestmark = pytest.mark.e2e
MODEL = "signed-tickets"
PASSWORD = "password-of-{}-1"


def _team(workspace: Path, keys_dir: Path, worker: str) -> dict[str, Path]:
    """Key files for the team and mallory; the approvers file in the workspace's configs/."""
    from thaw.signing import new_key, public_key_line

    may = {worker: ["register"], "alice": ["approve", "reject", "rollback", "acknowledge", "register"]}
    may |= {"bob": ["approve", "force"], "carol": ["approve", "force"]}
    keys, signers = {}, {}
    for name in (*may, "mallory"):
        keys[name] = keys_dir / name
        public = new_key(keys[name])
        if name in may:
            signers[name] = {"key": public_key_line(public, name), "may": may[name]}
    (workspace / "configs").mkdir(parents=True, exist_ok=True)
    (workspace / "configs" / "approvers.yaml").write_text(yaml.safe_dump({"signers": signers}), encoding="utf-8")
    return keys


def _env(keys: dict[str, Path], who: str, auth: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "THAW_SIGNING"))}
    env["THAW_SIGNING_KEY"] = str(keys[who])
    if auth:
        env |= {"MLFLOW_TRACKING_USERNAME": who, "MLFLOW_TRACKING_PASSWORD": PASSWORD.format(who)}
        if who == ADMIN[0]:
            env["MLFLOW_TRACKING_PASSWORD"] = ADMIN[1]
    return env


def _act_as(monkeypatch, keys: dict[str, Path], who: str, auth: bool) -> None:
    """This test process acts as ``who``: their key and, on the server, their account."""
    for name, value in _env(keys, who, auth).items():
        if name.startswith(("MLFLOW_TRACKING_", "THAW_SIGNING")):
            monkeypatch.setenv(name, value)


@pytest.fixture(params=["embedded", "basic-auth"])
def signed_project(request, tmp_path, tiny_encoder, prefect_harness, monkeypatch):
    """v1 trained and registered by the scheduled worker with its own key; the team's keys."""
    import contextlib

    from flows.pipeline import thaw_pipeline

    auth = request.param == "basic-auth"
    workspace = tmp_path / "project"
    server = mlflow_auth_server(tmp_path / "mlflow") if auth else contextlib.nullcontext(None)
    with server as uri:
        tracking = {"tracking": {"tracking_uri": uri}} if auth else {}
        settings = ticket_project(workspace, tiny_encoder, MODEL, 300, 21, **tracking)
        if auth:
            settings["promotion"] = {"lock_lease_seconds": 8}  # basic auth hashes every request
        worker = ADMIN[0] if auth else "scheduler"  # the pipeline's account on the server
        keys = _team(workspace, tmp_path / "keys", worker)
        _act_as(monkeypatch, keys, worker, auth)
        cfg = ThawConfig.model_validate(settings)
        thaw_pipeline(cfg)
        if auth:
            from mlflow.server.auth.client import AuthServiceClient

            accounts = AuthServiceClient(uri)
            for name in ("alice", "bob", "carol", "mallory"):
                accounts.create_user(name, PASSWORD.format(name))
                cheap_login(tmp_path / "mlflow", name, PASSWORD.format(name))
                accounts.grant_user_permission(name, "registered_model", MODEL, "MANAGE")
        yield cfg, keys, auth, tmp_path


def _thaw(project, who: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    """`thaw ARGS` as ``who`` (their account on the server, their key unless ``key`` names another's)."""
    cfg, keys, auth, tmp_path = project
    cmd = [sys.executable, "-m", "thaw_cli", *args, "--workspace", str(cfg.root)]
    cmd += ["--config", str(approver_config(tmp_path, cfg))]
    env = _env(keys, who, auth) | {"THAW_SIGNING_KEY": str(keys[key or who])}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _refused(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1500:]


def _ledger(cfg: ThawConfig) -> list[dict]:
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for
    from tasks.tracking.identity import team_approvers

    return list(ledger_report(client_for(cfg), MODEL, team_approvers(cfg)).entries)


def test_two_people_sign_every_promotion_and_a_forgery_blocks_the_next(signed_project, monkeypatch):
    cfg, keys, auth, _ = signed_project
    project = signed_project
    # the worker's key may register, never approve
    _refused(_thaw(project, list(keys)[0], "approve", MODEL, "1", "--reason", "mine"), "may not approve")
    done = _thaw(project, "bob", "approve", MODEL, "1", "--reason", "first champion")
    assert done.returncode == 0, done.stderr[-2000:]

    # alice registers v2 herself: she may not approve it, bob may not force it alone
    _act_as(monkeypatch, keys, "alice", auth)
    v2 = copy_version(cfg, MODEL, "1")
    _refused(_thaw(project, "alice", "approve", MODEL, v2, "--reason", "ship it"), "alice registered it")
    _refused(_thaw(project, "bob", "approve", MODEL, v2, "--reason", "ship", "--force"), "co-signature")
    if not auth:  # the embedded store: the forgery alone; the rest of the story runs on the server
        _forge(cfg, auth, monkeypatch)
        _refused(_thaw(project, "carol", "approve", MODEL, "1", "--reason", "again"), "the ledger does not verify")
        return
    # signed in as alice, signing with bob's key
    _refused(_thaw(project, "alice", "reject", MODEL, v2, "--reason", "no", key="bob"), "is 'bob''s")
    cosigned = _thaw(project, "carol", "cosign", MODEL, v2, "--reason", "incident 42: I agree to force")
    assert cosigned.returncode == 0, cosigned.stderr[-2000:]
    forced = _thaw(project, "bob", "approve", MODEL, v2, "--reason", "incident 42", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    approval = [e for e in _ledger(cfg) if e["action"] == "approve" and e["phase"] == "intent"][-1]
    assert (approval["by"], approval["force"], approval["cosigned_by"]) == ("bob", True, "carol")
    # the co-signature is spent: a second forced approval would need another
    verified = _thaw(project, "alice", "ledger", MODEL, "--verify")
    assert verified.returncode == 0 and "(signed)" in verified.stdout, verified.stdout + verified.stderr

    # mallory appends a rollback "by alice", chain and head anchor recomputed
    _forge(cfg, auth, monkeypatch)
    check = _thaw(project, "alice", "ledger", MODEL, "--verify")
    assert check.returncode == 1 and "is unsigned" in check.stderr, check.stdout + check.stderr
    _refused(_thaw(project, "carol", "approve", MODEL, "1", "--reason", "v1 again"), "the ledger does not verify")
    _refused(_thaw(project, "alice", "rollback", MODEL, "--reason", "back"), "the ledger does not verify")
    # one auth mode acknowledges as a person reads it, the other as a script does
    ack = ["ledger", MODEL, "--acknowledge", "--reason", "mallory's forgery, reported"]
    acknowledged = _thaw(project, "alice", *ack, *(["--json"] if auth else []))
    assert acknowledged.returncode == 0, acknowledged.stderr
    if auth:
        document = json.loads(acknowledged.stdout)
        assert len(document["acknowledged"]) == 1 and "is unsigned" in document["acknowledged"][0], document
        assert document["verifies"] is True and document["problems"] == [], document
    else:
        assert "1 problem acknowledged" in acknowledged.stdout, acknowledged.stdout
        assert "acknowledged: " in acknowledged.stdout and "is unsigned" in acknowledged.stdout, acknowledged.stdout
    rolled = _thaw(project, "alice", "rollback", MODEL, "--reason", "back to v1 after the incident")
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    final = _thaw(project, "alice", "ledger", MODEL, "--verify")
    assert final.returncode == 0 and "acknowledged by alice" in final.stdout, final.stdout + final.stderr
    again = _thaw(project, "alice", "ledger", MODEL, "--acknowledge", "--reason", "checked again", "--verify", "--json")
    document = json.loads(again.stdout)  # a script's view: one document, nothing printed beside it
    assert again.returncode == 0 and document["acknowledged"] == [] and document["verifies"] is True, again.stderr
    assert any("acknowledged by alice" in note for note in document["notes"]), document["notes"]


def _forge(cfg: ThawConfig, auth: bool, monkeypatch) -> None:
    """What MANAGE on the model allows without a key: write tags."""
    from tasks.tracking.client import client_for
    from thaw.ledger import HEAD_TAG, canonical_json, entry_digest, entry_key, head_value

    if auth:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "mallory")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD.format("mallory"))
    client, entries = client_for(cfg), _ledger(cfg)
    body = {"schema": 1, "op": "f00d", "phase": "intent", "action": "rollback", "version": "1", "by": "alice"}
    body |= {"identity": "authenticated by the MLflow tracking server", "at": "2026-12-02T00:00:00.000+00:00"}
    body["prev"] = entries[-1]["digest"]
    body["digest"] = entry_digest(body)
    key = entry_key(2**62, "f00d", "intent")
    client.set_registered_model_tag(MODEL, key, canonical_json(body))
    client.set_registered_model_tag(MODEL, HEAD_TAG, head_value(len(entries) + 1, body["digest"]))
    assert json.loads(client.get_registered_model(MODEL).tags[key])["by"] == "alice"
