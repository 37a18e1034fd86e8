"""A real PostgreSQL server for the e2e tests, run from Debian's packages as the
``postgres`` user in a throwaway data directory on a loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:  # a machine without the server: install it (these machines are root, with Debian's registry)
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, capture_output=True)
        found = next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))))
    return str(found)


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def postgres_server(databases: tuple[str, ...]) -> Iterator[str]:
    """Start PostgreSQL with ``databases`` created; yield ``USER@127.0.0.1:PORT``; stop and remove it."""
    root = Path(tempfile.mkdtemp(prefix="thaw-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    _as_postgres(_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "thaw", "--no-sync")
    server = ["runuser", "-u", "postgres", "--", _binary("postgres"), "-D", str(data), "-p", str(port), "-k", str(root)]
    settings = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    with open(root / "postgres.log", "w") as log:  # the server keeps its own descriptor
        proc = subprocess.Popen([*server, *settings], stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((root / "postgres.log").read_text()[-2000:])
            time.sleep(0.5)
        for db in databases:
            subprocess.run(
                [
                    _binary("psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "thaw",
                    "-d",
                    "postgres",
                    "-c",
                    f"CREATE DATABASE {db}",
                ],
                check=True,
                capture_output=True,
            )
        yield f"thaw@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
