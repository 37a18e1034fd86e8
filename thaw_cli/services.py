"""`thaw up` / `thaw down`: the Prefect server and the MLflow tracking server on loopback,
serving the same stores the embedded defaults use, started in the background."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.offline import service_environment
from thaw_cli.common import say


def _state_file(cfg: ThawConfig) -> Path:
    return cfg.state_path / "services.json"


def _wait(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def http_json(url: str, method: str = "GET", body: dict | None = None, ready_timeout_s: float = 60.0) -> object:
    """One JSON request to a local server; retried while it answers 503 (a fresh Prefect
    server does for a while after ``/api/health`` first answers, until its database is ready)."""
    import urllib.error

    data = None if body is None else json.dumps(body).encode()
    deadline = time.monotonic() + ready_timeout_s
    while True:
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode()
            return json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(1.0)


def mlflow_server_command(port: int, backend_store_uri: str, artifacts: Path, workers: int | None = None) -> list[str]:
    """``mlflow server`` on loopback with proxied artifacts (``thaw up`` and the tests)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", backend_store_uri, "--artifacts-destination", str(artifacts)]
    return cmd + (["--workers", str(workers)] if workers else [])


def serve_ui(cfg: ThawConfig, port: int) -> int:
    """``thaw ui``: the MLflow UI on the workspace's tracking store, in the foreground, on
    loopback, serving artifacts (so what the UI shows does not depend on the reader's
    disk). A tracking server already serves its own UI: say where instead."""
    import socket

    from thaw.tracking import tracking_uri

    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        say(f"the tracking store is a server: its UI is {uri}")
        return 0
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise UserError(f"port {port} is in use (by `thaw up`?); choose another with --port")
    cmd = mlflow_server_command(port, uri, cfg.state_path / "mlartifacts")
    say(f"MLflow UI on http://127.0.0.1:{port} for {uri}; Ctrl-C stops it", flush=True)
    # our process group: Ctrl-C, and a signal to the group, reach it too
    proc = subprocess.Popen(cmd, env=service_environment((cfg.curation.pii.secret_env,)))

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a service manager's stop: the server goes with us
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_process(proc)
        return 0


def stop_process(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """Ask ``proc`` to stop (SIGTERM); kill it if it has not within ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def prefect_server_command(port: int) -> list[str]:
    """``prefect server start`` on loopback, services on."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def first_error(log: Path) -> str | None:
    """The first line of ``log`` that reports an error, with the exception line after it."""
    if not log.is_file():
        return None
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" in line or " ERROR " in line or "| ERROR" in line:
            exception = next(
                (later for later in lines[i + 1 :] if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", later)), ""
            )
            return (line.strip() + (f" ... {exception.strip()}" if exception else ""))[:600]
    return None


def check_prefect_scheduler(api: str, log: Path, timeout_s: float = 60.0) -> float:
    """Prove the Prefect server's scheduler service works: a throw-away deployment with an
    hourly schedule must get its scheduled runs from the server (not from us) within
    ``timeout_s``. Return the seconds it took; raise UserError with the log's first error.

    ``/api/health`` answers as soon as the web app is up, even when every scheduler loop
    fails (as with SQLAlchemy 2.1 under Prefect 3.8), and then no schedule ever fires."""
    started = time.monotonic()
    flow = http_json(f"{api}/flows/", "POST", {"name": "thaw-scheduler-probe"})
    deployment = http_json(
        f"{api}/deployments/",
        "POST",
        {
            "name": f"probe-{os.getpid()}",
            "flow_id": flow["id"],
            "schedules": [{"schedule": {"interval": 3600}, "active": True}],
        },
    )
    try:
        while time.monotonic() - started < timeout_s:
            runs = http_json(
                f"{api}/flow_runs/filter", "POST", {"deployments": {"id": {"any_": [deployment["id"]]}}, "limit": 1}
            )
            if runs:
                return time.monotonic() - started
            time.sleep(1.0)
    finally:
        http_json(f"{api}/deployments/{deployment['id']}", "DELETE")
        http_json(f"{api}/flows/{flow['id']}", "DELETE")
    error = first_error(log)
    raise UserError(
        f"the Prefect server answers but its scheduler created no run in {timeout_s:.0f}s, so no schedule "
        f"would fire; {f'first error in {log}: {error}' if error else f'see {log}'}"
    )


def start_services(cfg: ThawConfig, mlflow_port: int = 5000, prefect_port: int = 4200) -> dict[str, str]:
    """Start both servers (detached, logs in the state dir); return their URLs."""
    if _state_file(cfg).is_file():
        raise UserError(f"services already recorded in {_state_file(cfg)}; run `thaw down` first")
    state = cfg.state_path
    bin_dir = str(Path(sys.executable).parent)
    env = service_environment(
        (cfg.curation.pii.secret_env,),
        PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
        PREFECT_HOME=str(state / "prefect"),
    )
    commands = {
        "mlflow": (
            mlflow_server_command(mlflow_port, f"sqlite:///{state / 'mlflow.db'}", state / "mlartifacts"),
            f"http://127.0.0.1:{mlflow_port}",
            "/health",
        ),
        "prefect": (
            prefect_server_command(prefect_port),
            f"http://127.0.0.1:{prefect_port}",
            "/api/health",
        ),
    }
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    record = {}
    for name, (cmd, url, _) in commands.items():
        with open(state / f"{name}-server.log", "w") as log:  # the server keeps its own descriptor
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        record[name] = {"pid": proc.pid, "url": url}
    _state_file(cfg).write_text(json.dumps(record, indent=2), encoding="utf-8")
    for name, (_, url, health) in commands.items():
        if not _wait(url + health, 120):
            stop_services(cfg)
            error = first_error(state / f"{name}-server.log")
            raise UserError(
                f"the {name} server did not come up; "
                + (
                    f"first error in {state / f'{name}-server.log'}: {error}"
                    if error
                    else f"see {state / f'{name}-server.log'}"
                )
            )
    try:
        record["prefect"]["scheduler_seconds"] = check_prefect_scheduler(
            record["prefect"]["url"] + "/api", state / "prefect-server.log"
        )
    except BaseException:
        stop_services(cfg)
        raise
    return {name: r["url"] for name, r in record.items()} | {
        "scheduler_seconds": f"{record['prefect']['scheduler_seconds']:.1f}"
    }


def stop_services(cfg: ThawConfig) -> list[str]:
    """Stop what `thaw up` started; return the names stopped."""
    path = _state_file(cfg)
    if not path.is_file():
        return []
    stopped = []
    for name, rec in json.loads(path.read_text(encoding="utf-8")).items():
        try:
            os.killpg(rec["pid"], signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            pass
    path.unlink()
    return stopped
