"""The pipeline as a scheduled deployment on a real Prefect server on loopback, and one
training at a time per model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.servers import free_port, running
from thaw.demo_data import generate_support_tickets

pytestmark = pytest.mark.e2e

API_SCRIPT = """
import json, sys, time
from prefect.deployments import run_deployment
run = run_deployment(sys.argv[1], timeout=600, poll_interval=2)
print(json.dumps({"id": str(run.id), "state": run.state.type.value}))
"""


def _project(root: Path, encoder: Path) -> Path:
    (root / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "data" / "tickets.csv").write_text(generate_support_tickets(300, seed=4)[0], encoding="utf-8")
    cfg = {
        "model_name": "tickets",
        "data": {
            "train": "data/tickets.csv",
            "text_column": "message",
            "label_column": "intent",
            "id_column": "ticket_id",
        },
        "backbone": {"name": "tiny", "path": str(encoder), "max_length": 48},
        "curation": {"expectations": {"min_rows": 50}},
        "training": {"head": {"c_grid": [100.0]}, "ladder": {"rungs": ["frozen"]}},
    }
    (root / "thaw.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root / "thaw.yaml"


def test_scheduled_deployment_runs_and_registers_a_version_linked_to_its_flow_run(tmp_path, tiny_encoder):
    from mlflow import MlflowClient

    project = tmp_path / "project"
    config = _project(project, tiny_encoder)
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with running(
        server, f"http://127.0.0.1:{port}/api/health", tmp_path / "prefect-server.log", env=env, timeout_s=180
    ):
        serve = [
            sys.executable,
            "-m",
            "thaw_cli",
            "schedule",
            "--config",
            str(config),
            "--workspace",
            str(project),
            "--cron",
            "0 3 * * *",
            "--name",
            "nightly",
        ]
        with running(serve, f"http://127.0.0.1:{port}/api/health", tmp_path / "serve.log", env=env):
            deadline = time.monotonic() + 120
            trigger = None
            while time.monotonic() < deadline:  # the serve process registers the deployment first
                trigger = subprocess.run(
                    [sys.executable, "-c", API_SCRIPT, "thaw-pipeline/nightly"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                if trigger.returncode == 0:
                    break
                time.sleep(3)
            assert trigger is not None and trigger.returncode == 0, (
                trigger.stderr[-2000:] + (tmp_path / "serve.log").read_text()[-2000:]
            )
            flow_run = json.loads(trigger.stdout.strip().splitlines()[-1])
    assert flow_run["state"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    uri = f"sqlite:///{project / '.thaw' / 'mlflow.db'}"
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("tickets", "challenger")
    assert mv.tags["thaw.prefect_flow_run_id"] == flow_run["id"]


@pytest.mark.integration
def test_a_second_run_waits_or_is_skipped_while_one_trains(workspace, tiny_encoder, prefect_harness):
    from flows.pipeline import thaw_pipeline
    from tasks.scheduling import training_slot
    from tests.integration.test_pipeline import _config

    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    path.write_text(generate_support_tickets(rows=300, seed=6)[0], encoding="utf-8")
    base = _config(workspace, tiny_encoder, path)
    skip = base.model_copy(update={"scheduling": base.scheduling.model_copy(update={"on_concurrent_run": "skip"})})
    with training_slot(base) as held:  # another run is training this model
        assert held
        summary = json.loads(Path(thaw_pipeline(skip)).read_text())
        assert summary["skipped"] == "another run of this model is training"
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (thaw_pipeline(base), done.set()))
        waiter.start()
        time.sleep(25)
        assert not done.is_set()  # it waits for the slot
    waiter.join(timeout=300)
    assert done.is_set()
    from tasks.registry import client_for

    versions = client_for(base).search_model_versions("name='tickets'")
    assert len(versions) == 1  # the skipped run registered nothing
