"""Servers the e2e tests start on loopback: free ports, bounded waits, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from thaw_cli.services import mlflow_server_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout_s}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running(
    cmd: list[str], health_url: str, log: Path, env: dict | None = None, timeout_s: float = 120
) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group, wait for ``health_url``, stop it afterwards."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    try:
        wait_http(health_url, proc, timeout_s, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, proxied artifacts) on loopback."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = mlflow_server_command(port, f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", workers=1)
    with running(cmd, f"http://127.0.0.1:{port}/health", root / "mlflow-server.log"):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[str]:
    """An S3-compatible API server (moto's server mode) on loopback; yields its endpoint URL."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running(cmd, f"http://127.0.0.1:{port}/moto-api/", root / "s3-server.log"):
        yield f"http://127.0.0.1:{port}"


ADMIN = ("admin", "admin-password-for-tests")


def cheap_login(root: Path, user: str, password: str) -> None:
    """Store ``user``'s password in the server of ``mlflow_auth_server(root)`` as PBKDF2 with
    1,000 rounds instead of MLflow's scrypt default. The server checks the password on
    every request, about 150 ms each with scrypt on this CPU, which made the basic-auth
    tests spend minutes hashing; it still authenticates every request, more cheaply."""
    import sqlite3

    from werkzeug.security import generate_password_hash

    hashed = generate_password_hash(password, method="pbkdf2:sha256:1000")
    with contextlib.closing(sqlite3.connect(root / "basic_auth.db", timeout=30)) as db, db:
        changed = db.execute("UPDATE users SET password_hash = ? WHERE username = ?", (hashed, user)).rowcount
    assert changed == 1, f"no user {user!r} in {root / 'basic_auth.db'}"


@contextlib.contextmanager
def mlflow_auth_server(root: Path) -> Iterator[str]:
    """A real MLflow tracking server with its basic-auth app, as infra/ runs it, on loopback."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        encoding="utf-8",
    )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "1",
    ]
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only-csrf-key"}
    with running(cmd, f"http://127.0.0.1:{port}/health", root / "mlflow-server.log", env=env):
        cheap_login(root, *ADMIN)
        yield f"http://127.0.0.1:{port}"
