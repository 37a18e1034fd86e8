"""Promotion under races and crashes, against a real MLflow server on PostgreSQL.

Eight processes register, approve and roll back at random; then processes are killed
(SIGKILL) at each point between intent, alias move and completion. The ledger must
verify, match the aliases, and account for every operation a process reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.projects import ticket_project
from tests.servers import free_port, running
from tests.servers_postgres import postgres_server
from thaw.config import ThawConfig
from thaw_cli.services import mlflow_server_command

pytestmark = pytest.mark.e2e
MODEL = "tickets"
ROOT = Path(__file__).resolve().parents[3]
WORKER = """
import json, random, sys
from tasks.release.promotion import approve, rollback
from tasks.tracking.client import CHALLENGER, alias_version, client_for
from tests.projects import copy_version
from thaw.config import ThawConfig
from thaw.errors import UserError
cfg, index, out = ThawConfig.model_validate_json(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(index)
with open(out, "a") as fh:
    for step in range(int(sys.argv[4])):
        action = "register" if step == 0 else rng.choice(["approve", "approve", "rollback"])
        reason = f"p{index}-{step}"
        record = {"process": index, "action": action, "reason": reason}
        try:
            if action == "register":
                record["version"] = copy_version(cfg, "tickets", "1")
                record["outcome"] = "applied"
            elif action == "approve":
                record["version"] = alias_version(client_for(cfg), "tickets", CHALLENGER)
                if record["version"] is None:
                    record["outcome"] = "nothing to approve"
                else:
                    approve(cfg, "tickets", record["version"], reason, force=True)
                    record["outcome"] = "applied"
            else:
                record["version"] = rollback(cfg, "tickets", reason)
                record["outcome"] = "applied"
        except UserError as exc:
            record["outcome"] = "refused" if "not promoted" in str(exc) else "declined: " + str(exc)[:200]
        fh.write(json.dumps(record) + "\\n")
"""


@pytest.fixture(scope="module")
def team(tmp_path_factory, tiny_encoder, prefect_harness):
    """An MLflow server on PostgreSQL, one pipeline run registering v1, v1 approved."""
    from flows.pipeline import thaw_pipeline
    from tasks.release.promotion import approve

    base = tmp_path_factory.mktemp("faults")
    with postgres_server(("mlflow",)) as pg:
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        cmd = mlflow_server_command(port, f"postgresql+psycopg2://{pg}/mlflow", base / "artifacts", workers=2)
        with running(cmd, f"{uri}/health", base / "mlflow.log", timeout_s=180):
            settings = ticket_project(
                base / "project",
                tiny_encoder,
                MODEL,
                300,
                5,
                tracking={"tracking_uri": uri},
                # short, so the kill tests wait out a dead holder quickly (the default is 60 s); not
                # 3 s: on two cores shared with other jobs, one of eight racing processes went
                # 3 s without renewing and lost the lock (LockLost, by design)
                promotion={"lock_lease_seconds": 8, "lock_wait_seconds": 600},
            )
            cfg = ThawConfig.model_validate(settings)
            thaw_pipeline(cfg)
            approve(cfg, MODEL, "1", "the first model, reviewed")
            yield cfg, base


def _report(cfg):
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for

    return ledger_report(client_for(cfg), MODEL, None)


def _champion(cfg) -> str | None:
    from tasks.tracking.client import CHAMPION, alias_version, client_for

    return alias_version(client_for(cfg), MODEL, CHAMPION)


def _python(code: str, *args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _mismatches(report, claims: list[dict]) -> list[str]:
    """Differences between what the processes said happened and what the ledger holds."""
    problems = list(report.problems)
    intents = {e["op"]: e for e in report.entries if e.get("phase") == "intent"}
    outcome = {e["op"]: e["outcome"] for e in report.entries if e.get("phase") == "completion"}
    by_reason = {}
    for op, e in intents.items():
        if e.get("reason"):
            by_reason.setdefault(e["reason"], []).append(op)
    registered = {e["version"] for op, e in intents.items() if e["action"] == "register" and outcome[op] == "applied"}
    for claim in claims:
        if claim["action"] == "register":
            if claim["version"] not in registered:
                problems.append(f"{claim}: no applied registration in the ledger")
        elif claim["outcome"] in ("applied", "refused"):
            ops = by_reason.get(claim["reason"], [])
            if len(ops) != 1 or outcome[ops[0]] != claim["outcome"]:
                problems.append(f"{claim}: ledger has {[outcome[o] for o in ops]}")
        elif claim["reason"] in by_reason:
            problems.append(f"{claim}: declined before acting, yet the ledger holds an intent")
    champion = None  # every applied move started from the champion the one before left
    for e in report.entries:
        if e.get("phase") == "intent" and e["action"] in ("approve", "rollback") and outcome[e["op"]] == "applied":
            if e.get("champion_before") != champion and champion is not None:
                problems.append(f"{e['key']}: moved from v{e.get('champion_before')} but the champion was v{champion}")
            champion = e["version"]
    return problems


def test_eight_processes_leave_one_champion_and_a_ledger_that_matches_it(team):
    cfg, base = team
    out = base / "claims.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, cfg.model_dump_json(), str(i), str(out), "4"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=1500)
        assert p.returncode == 0, err[-3000:]
    claims = [json.loads(line) for line in out.read_text().splitlines()]
    report = _report(cfg)
    mismatches = _mismatches(report, claims)
    figures = {
        "processes": 8,
        "operations": len(claims),
        "approvals attempted": sum(c["action"] == "approve" and c["version"] is not None for c in claims),
        "approvals completed": sum(c["action"] == "approve" and c["outcome"] == "applied" for c in claims),
        "approvals refused": sum(c["action"] == "approve" and c["outcome"] == "refused" for c in claims),
        "rollbacks completed": sum(c["action"] == "rollback" and c["outcome"] == "applied" for c in claims),
        "registrations": sum(c["action"] == "register" for c in claims),
        "ledger entries": len(report.entries),
        "mismatches": len(mismatches),
    }
    print("promotion race:", json.dumps(figures))
    (base / "race-figures.json").write_text(json.dumps(figures), encoding="utf-8")
    assert mismatches == [] and report.open_operations == ()
    assert _champion(cfg) == report.champion is not None


KILL = (
    ("register:after-intent", "not-applied"),
    ("approve:after-intent", "not-applied"),
    ("approve:after-alias", "applied"),
    ("rollback:after-intent", "not-applied"),
    ("rollback:after-alias", "applied"),
)


def _operation(point: str) -> str:
    action = point.split(":")[0]
    if action == "register":
        return "from tests.projects import copy_version; copy_version(CFG, 'tickets', '1')"
    if action == "approve":
        return (
            "from tasks.release.promotion import approve; from tasks.tracking.client import alias_version, client_for\n"
            "approve(CFG, 'tickets', alias_version(client_for(CFG), 'tickets', 'challenger'), 'killed', force=True)"
        )
    return "from tasks.release.promotion import rollback; rollback(CFG, 'tickets', 'killed')"


def _prepare(cfg, point: str) -> None:
    """Make the operation at ``point`` possible: a challenger to approve, a champion to roll back to."""
    from tasks.release.promotion import approve
    from tests.projects import copy_version

    if point.startswith("approve") or point.startswith("rollback"):
        version = copy_version(cfg, MODEL, "1")
        if point.startswith("rollback"):
            approve(cfg, MODEL, version, "a champion to roll back", force=True)
            copy_version(cfg, MODEL, "1")


@pytest.mark.parametrize("point,expected", KILL)
def test_a_process_killed_between_intent_alias_and_completion_is_reported_then_recovered(team, point, expected):
    from tests.projects import copy_version

    cfg, base = team
    _prepare(cfg, point)
    code = "import sys; from thaw.config import ThawConfig; CFG = ThawConfig.model_validate_json(sys.argv[1])\n"
    killed = _python(code + _operation(point), cfg.model_dump_json(), env={"THAW_TEST_KILL_AT": point})
    assert killed.returncode == -9, killed.stderr[-3000:]
    cli = [sys.executable, "-m", "thaw_cli", "ledger", MODEL, "--verify", "--workspace", str(cfg.root)]
    config = base / "cli.yaml"
    config.write_text(
        f"model_name: {MODEL}\ntracking:\n  tracking_uri: {cfg.tracking.tracking_uri}\n", encoding="utf-8"
    )
    shown = subprocess.run([*cli, "--config", str(config)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert shown.returncode == 0 and "INTERRUPTED: " + point.split(":")[0] in shown.stdout, shown.stderr[-2000:]
    as_json = subprocess.run(
        [*cli, "--config", str(config), "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    reported = json.loads(as_json.stdout)  # one document, the interruption in it: nothing printed after
    assert as_json.returncode == 0 and reported["verifies"] is True, as_json.stderr[-2000:]
    assert [line.split()[0] for line in reported["interrupted"]] == [point.split(":")[0]]
    copy_version(cfg, MODEL, "1")  # the next operation: waits out the dead holder's lease, then recovers
    report = _report(cfg)
    recovered = [e for e in report.entries if e.get("recovered")][-1]
    assert recovered["outcome"] == expected and recovered["action"] == point.split(":")[0]
    assert any(e["action"] == "break-lock" for e in report.entries[-6:])
    assert report.ok and report.open_operations == () and _champion(cfg) == report.champion
