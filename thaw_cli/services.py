"""`thaw up` / `thaw down`: the Prefect server and the MLflow tracking server on loopback,
serving the same stores the embedded defaults use, started in the background."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from thaw.config import ThawConfig
from thaw.errors import UserError


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


def start_services(cfg: ThawConfig, mlflow_port: int = 5000, prefect_port: int = 4200) -> dict[str, str]:
    """Start both servers (detached, logs in the state dir); return their URLs."""
    if _state_file(cfg).is_file():
        raise UserError(f"services already recorded in {_state_file(cfg)}; run `thaw down` first")
    state = cfg.state_path
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PREFECT_HOME": str(state / "prefect"),
    }
    commands = {
        "mlflow": (
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--backend-store-uri",
                f"sqlite:///{state / 'mlflow.db'}",
                "--artifacts-destination",
                str(state / "mlartifacts"),
            ],
            f"http://127.0.0.1:{mlflow_port}",
            "/health",
        ),
        "prefect": (
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
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
            raise UserError(f"the {name} server did not come up; see {state / f'{name}-server.log'}")
    return {name: r["url"] for name, r in record.items()}


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
