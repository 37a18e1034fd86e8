"""The pipeline as a scheduled deployment on a real Prefect server on loopback, and one
training at a time per model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.projects import TEST_SERVING
from tests.servers import free_port, running
from thaw.demo_data import generate_support_tickets
from thaw_cli.services import http_json, prefect_server_command

pytestmark = pytest.mark.e2e


def _api(api: str, path: str, body: dict | None = None):
    return http_json(f"{api}{path}", "GET" if body is None else "POST", body)


def _runs(api: str, deployment_name: str) -> list[dict]:
    return _api(
        api,
        "/flow_runs/filter",
        {"deployments": {"name": {"any_": [deployment_name]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200},
    )


def _wait_for(what: str, check, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; serve log:\n{log.read_text()[-3000:]}")


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
        "serving": TEST_SERVING,
        "curation": {"expectations": {"min_rows": 50}},
        "training": {"head": {"c_grid": [100.0]}, "ladder": {"rungs": ["frozen"]}},
    }
    (root / "thaw.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root / "thaw.yaml"


def _server_env(tmp_path: Path, port: int, **extra: str) -> dict:
    return {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RUNNER_POLL_FREQUENCY": "3",
        **extra,
    }


def test_the_schedule_fires_by_itself_reuses_caches_and_stops_cleanly_on_sigterm(tmp_path, tiny_encoder):
    """Nothing here starts a run: the server's scheduler creates them from the interval,
    the `thaw schedule` process executes them, and SIGTERM stops it within a bounded time."""
    from mlflow import MlflowClient

    from thaw_cli.services import check_prefect_scheduler

    project = tmp_path / "project"
    config = _project(project, tiny_encoder)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _server_env(tmp_path, port, THAW_PII_SECRET="a-team-key-kept-across-runs")  # so curation can be reused
    grace = 5
    with running(
        prefect_server_command(port), f"{api}/health", tmp_path / "prefect-server.log", env=env, timeout_s=180
    ):
        assert check_prefect_scheduler(api, tmp_path / "prefect-server.log") < 60  # what `thaw up` checks
        serve_log = tmp_path / "serve.log"
        cmd = [sys.executable, "-m", "thaw_cli", "schedule", "--config", str(config), "--workspace", str(project)]
        cmd += ["--interval", "20", "--name", "every-20s", "--stop-grace", str(grace)]
        with open(serve_log, "w") as out:
            serve = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:

            def completed():
                runs = [r for r in _runs(api, "every-20s") if r["state_type"] == "COMPLETED"]
                return runs if len(runs) >= 2 else None

            first, second = _wait_for("two completed scheduled runs", completed, 600, serve_log)[:2]
            assert first["auto_scheduled"] and second["auto_scheduled"]  # the scheduler made them, not us
            in_flight = _wait_for(
                "a third run in flight",
                lambda: [r for r in _runs(api, "every-20s") if r["state_type"] == "RUNNING"],
                180,
                serve_log,
            )[0]
            time.sleep(3)
            signalled = time.monotonic()
            serve.send_signal(signal.SIGTERM)  # as systemd or Kubernetes would
            code = serve.wait(timeout=grace + 45)
            stopped_after = time.monotonic() - signalled
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()
        log = serve_log.read_text()
        assert code == 0, log[-3000:]
        assert "SIGTERM: no new runs will start" in log and "stopped in" in log
        third = _api(api, f"/flow_runs/{in_flight['id']}")
        assert third["state_type"] in {"COMPLETED", "CANCELLED"}, third["state"]
        print(f"SIGTERM to exit: {stopped_after:.1f}s; run in flight ended {third['state_type']}")
        # stopped, the deployment is paused: runs do not pile up for a worker that is gone
        assert _api(api, "/deployments/name/thaw-pipeline/every-20s")["paused"] is True

    uri = f"sqlite:///{project / '.thaw' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    by_flow_run = {v.tags["thaw.prefect_flow_run_id"]: v for v in client.search_model_versions("name='tickets'")}
    assert {first["id"], second["id"]} <= set(by_flow_run)
    runs = {
        r.data.tags["thaw.prefect_flow_run_id"]: r
        for r in client.search_runs([client.get_experiment_by_name("thaw").experiment_id])
    }
    summary_path = client.download_artifacts(runs[second["id"]].info.run_id, "summary.json", str(tmp_path))
    summary = json.loads(Path(summary_path).read_text())
    assert summary["caches"]["curation_hit"] is True
    assert all(summary["caches"]["frozen_features_hit"].values()), summary["caches"]
    if third["state_type"] == "CANCELLED":
        ended = runs[third["id"]]
        if ended.info.status == "FINISHED":
            # the cancel landed after the run's last step (between closing its MLflow run and
            # Prefect recording Completed): its work is whole, so its version is registered
            registered = {v.tags["thaw.prefect_flow_run_id"] for v in client.search_model_versions("name='tickets'")}
            assert third["id"] in registered
        else:
            assert ended.info.status == "KILLED"
            assert "stopped before the end" in ended.data.tags["thaw.end_reason"]
    leftovers = [p for p in project.rglob("*") if p.name.endswith(".partial") or ".partial" in p.name]
    assert not leftovers, leftovers


def test_a_server_whose_scheduler_does_not_work_is_reported(tmp_path):
    from thaw.errors import UserError
    from thaw_cli.services import check_prefect_scheduler

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _server_env(tmp_path, port, PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false")
    with running(
        prefect_server_command(port), f"{api}/health", tmp_path / "prefect-server.log", env=env, timeout_s=180
    ):
        with pytest.raises(UserError, match="scheduler created no run in 15s"):
            check_prefect_scheduler(api, tmp_path / "prefect-server.log", timeout_s=15)
        assert _api(api, "/deployments/filter", {}) == []  # the probe cleaned up after itself


def test_thaw_up_refuses_a_prefect_server_whose_scheduler_does_not_work(tmp_path):
    """As a user meets it: `thaw up` with a server whose scheduler never runs (here turned
    off) says so and stops what it started, instead of printing two healthy URLs."""
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    mlflow_port, prefect_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    secrets = {"THAW_PII_SECRET": "the-team-pii-key-0123", "MLFLOW_TRACKING_PASSWORD": "the-password"}
    secrets["THAW_SIGNING_KEY"] = str(tmp_path / "alices-key")
    cmd = [sys.executable, "-m", "thaw_cli", "up", "--workspace", str(project)]
    cmd += ["--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)]
    with subprocess.Popen(cmd, env=env | secrets, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        servers = _servers_started_by(proc)  # while `thaw up` waits for the scheduler
        stdout, stderr = proc.communicate(timeout=400)
    up = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert set(servers) == {"mlflow", "prefect"}, servers  # each with its environment read
    for environ in servers.values():  # the servers thaw starts hold none of the caller's secrets
        assert not set(secrets) & set(environ) and not set(secrets.values()) & set(environ.values())
    assert up.returncode == 2, up.stdout + up.stderr  # a user-facing error, one line
    assert "its scheduler created no run in 60s, so no schedule would fire" in up.stderr
    assert "Prefect UI" not in up.stdout
    assert not (project / ".thaw" / "services.json").exists()  # stopped: nothing left to `thaw down`
    for port in (mlflow_port, prefect_port):  # and the servers are gone
        _wait_for(
            f"port {port} released", lambda port=port: _port_free(port), 30, project / ".thaw" / "prefect-server.log"
        )


def test_thaw_up_starts_servers_that_schedule_and_thaw_down_stops_them(tmp_path):
    """The README's "Operate it as a team", as a user types it: `thaw up` (the scheduler
    really works), a second `thaw up` refused while they run, `thaw down`, which returns once
    both are gone, and a `thaw down` with nothing left to stop."""
    import urllib.request

    project = tmp_path / "project"
    project.mkdir()
    mlflow_port, prefect_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
    ports = ["--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)]

    def thaw(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "thaw_cli", *args, "--workspace", str(project)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)

    record = project / ".thaw" / "services.json"
    try:
        up = thaw("up", *ports)
        assert up.returncode == 0, up.stdout + up.stderr[-3000:]
        assert f"MLflow UI and tracking server  http://127.0.0.1:{mlflow_port}\n" in up.stdout
        assert "Prefect scheduler              working (created a probe deployment's runs in " in up.stdout
        assert f"export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api" in up.stdout
        pids = {name: rec["pid"] for name, rec in json.loads(record.read_text(encoding="utf-8")).items()}
        for url in (f"http://127.0.0.1:{mlflow_port}/health", f"http://127.0.0.1:{prefect_port}/api/health"):
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200, url

        again = thaw("up", *ports)
        assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
        assert f"already running: mlflow (pid {pids['mlflow']}, http://127.0.0.1:{mlflow_port})" in again.stderr

        down = thaw("down")
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines() == [
            f"stopped mlflow (pid {pids['mlflow']})",
            f"stopped prefect (pid {pids['prefect']})",
        ]
        assert not record.exists()
        for port in (mlflow_port, prefect_port):  # the servers' workers go with them
            _wait_for(
                f"port {port} released",
                lambda port=port: _port_free(port),
                30,
                project / ".thaw" / "prefect-server.log",
            )
        assert thaw("down").stdout == "nothing to stop (no servers recorded by `thaw up`)\n"
    finally:
        if record.exists():
            thaw("down")


SERVERS = {"mlflow": {"mlflow", "server"}, "prefect": {"prefect", "server", "start"}}  # words of each command


def _servers_started_by(proc: subprocess.Popen, timeout_s: float = 60) -> dict[str, dict[str, str]]:
    """The environments of the servers ``proc`` started, by name, once both are up. A
    server is read only once its command line is the server's: a child shows its parent's
    environment (the caller's secrets included) in /proc until it execs, and is already a
    session leader by then (``start_new_session`` calls setsid before the exec), so under
    load a scan caught one in that window and read the caller's environment. Once the
    command line is the server's the exec has happened, and the environment is the server's."""
    import psutil

    found: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(SERVERS) and time.monotonic() < deadline and proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, OSError):
                words = set(child.cmdline())
                for name, command in SERVERS.items():
                    if command <= words and os.getsid(child.pid) == child.pid:
                        found.setdefault(name, child.environ())
        time.sleep(0.5)
    return found


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.integration
def test_a_second_run_waits_or_is_skipped_while_one_trains(workspace, tiny_encoder, prefect_harness):
    from flows.pipeline import thaw_pipeline
    from tasks.ladder.training_slot import training_slot
    from tests.projects import pipeline_config

    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    path.write_text(generate_support_tickets(rows=300, seed=6)[0], encoding="utf-8")
    base = pipeline_config(workspace, tiny_encoder, path)
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
    from tasks.tracking.client import client_for

    versions = client_for(base).search_model_versions("name='tickets'")
    assert len(versions) == 1  # the skipped run registered nothing
