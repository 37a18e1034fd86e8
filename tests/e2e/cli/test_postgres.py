"""The pipeline against MLflow and Prefect servers that both run on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.projects import TEST_SERVING
from tests.servers import free_port, running
from tests.servers_postgres import postgres_server
from thaw.demo_data import generate_support_tickets
from thaw_cli.services import mlflow_server_command, prefect_server_command

pytestmark = pytest.mark.e2e


def test_pipeline_runs_against_mlflow_and_prefect_on_postgresql(tmp_path, tiny_encoder):
    from mlflow import MlflowClient

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "data" / "tickets.csv").write_text(generate_support_tickets(300, seed=8)[0], encoding="utf-8")
    with postgres_server(("mlflow", "prefect")) as pg:
        m_port, p_port = free_port(), free_port()
        mlflow_uri = f"http://127.0.0.1:{m_port}"
        env = {
            **os.environ,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{pg}/prefect",
        }
        mlflow_cmd = mlflow_server_command(m_port, f"postgresql+psycopg2://{pg}/mlflow", tmp_path / "artifacts", 1)
        prefect_cmd = prefect_server_command(p_port)
        with (
            running(mlflow_cmd, f"{mlflow_uri}/health", tmp_path / "mlflow.log", env=env, timeout_s=180),
            running(
                prefect_cmd, f"http://127.0.0.1:{p_port}/api/health", tmp_path / "prefect.log", env=env, timeout_s=180
            ),
        ):
            cfg = {
                "model_name": "tickets",
                "tracking": {"tracking_uri": mlflow_uri},
                "data": {
                    "train": "data/tickets.csv",
                    "text_column": "message",
                    "label_column": "intent",
                    "id_column": "ticket_id",
                },
                "backbone": {"name": "tiny", "path": str(tiny_encoder), "max_length": 48},
                "serving": TEST_SERVING,
                "curation": {"expectations": {"min_rows": 50}},
                "training": {"head": {"c_grid": [100.0]}, "ladder": {"rungs": ["frozen"]}},
            }
            (project / "thaw.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
            run_env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{p_port}/api"}
            proc = subprocess.run(
                [sys.executable, "-m", "thaw_cli", "run", "--config", "thaw.yaml", "--summary-json", "s.json"],
                cwd=project,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            summary = json.loads((project / "s.json").read_text())
            client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
            mv = client.get_model_version_by_alias("tickets", "challenger")
            assert str(mv.version) == summary["model"]["version"]
            flow_run_id = mv.tags["thaw.prefect_flow_run_id"]
            check = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from prefect import get_client\n"
                    "with get_client(sync_client=True) as c: print(c.read_flow_run(sys.argv[1]).state.type.value)",
                    flow_run_id,
                ],
                env=run_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert check.stdout.strip().splitlines()[-1] == "COMPLETED", check.stderr[-2000:]


def test_the_request_store_on_postgresql_is_the_one_every_process_reads(tmp_path):
    """A team's store: the server's process and another (thaw feedback, thaw canary) see
    the same rows, the same digest key and the same refusals."""
    import uuid

    from thaw.errors import UserError
    from thaw.request_store import RequestStore, now_iso

    with postgres_server(("requests",)) as pg:
        url = f"postgresql+psycopg2://{pg}/requests"
        server, reader = RequestStore(url), RequestStore(url)
        assert (
            server.digest("I lost my card")
            == reader.digest("I lost my card")
            != RequestStore(f"sqlite:///{tmp_path / 'other.db'}").digest("I lost my card")
        )
        ids = [uuid.uuid4().hex for _ in range(3)]
        server.record(
            [
                {
                    "id": rid,
                    "model": "tickets",
                    "at": now_iso(),
                    "mode": "canary",
                    "answered_by": "challenger" if i == 0 else "champion",
                    "champion_version": "1",
                    "challenger_version": "2",
                    "text_digest": server.digest(f"text {i}"),
                    "text_chars": 6,
                    "model_input": None,
                    "batch_rows": 1,
                    "champion_label": "refund",
                    "champion_confidence": 0.9,
                    "champion_ms": 5.0,
                    "champion_error": None,
                    "challenger_label": "refund" if i < 2 else "lost_card",
                    "challenger_confidence": 0.8,
                    "challenger_ms": 6.0,
                    "challenger_error": None,
                }
                for i, rid in enumerate(ids)
            ]
        )
        with pytest.raises(UserError, match="1 request id the store does not hold"):
            reader.add_feedback([(ids[0], "refund"), ("0" * 32, "refund")], "labels.csv")
        assert reader.add_feedback([(rid, "refund") for rid in ids], "labels.csv") == 3
        report = server.report("tickets", "1", "2")
        assert (report.requests, report.agreement.hits, report.accuracy["challenger"].hits) == (3, 2, 2)
        assert report.answered == {"champion": 2, "challenger": 1}
        server.close()
        reader.close()
