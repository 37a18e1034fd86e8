"""`thaw up` / `thaw down`: the Prefect server and the MLflow tracking server on loopback,
serving the same stores the embedded defaults use, started in the background."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.offline import service_environment
from thaw.parse import json_value
from thaw.shown import one_line
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
            return json_value(text) if text else None
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
    from thaw.tracking import tracking_uri

    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        say(f"the tracking store is a server: its UI is {uri}")
        return 0
    if _port_in_use(port):
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


SERVERS = ("mlflow", "prefect")


def start_services(cfg: ThawConfig, mlflow_port: int = 5000, prefect_port: int = 4200) -> dict[str, str]:
    """Start both servers (detached, logs in the state dir); return their URLs."""
    path = _state_file(cfg)
    if path.is_file():
        running = [f"{s.name} (pid {s.pid}, {s.url})" for s in recorded_servers(path) if s.running() is True]
        if running:
            raise UserError(f"already running: {', '.join(running)} (recorded in {path}); `thaw down` stops them")
        say(f"the servers recorded in {path} are no longer running (a reboot?): starting new ones")
        path.unlink()
    for name, port in (("mlflow", mlflow_port), ("prefect", prefect_port)):
        if _port_in_use(port):  # a server already there would answer the health checks in place of ours
            raise UserError(
                f"port {port} is in use, so the {name} server cannot listen there; choose another with --{name}-port"
            )
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
        record[name] = {"pid": proc.pid, "url": url, "started": _started(proc.pid)}
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")  # each as soon as it runs: `thaw down` finds it
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


def _port_in_use(port: int) -> bool:
    """Whether something on loopback answers at ``port``."""
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # a zombie too: it exited at once, and thaw up says why from its log
        return None


@dataclass(frozen=True)
class RecordedServer:
    """A server as ``thaw up`` recorded it: its process id (the leader of a session of its
    own) and when that process started, so that a pid the system has since given to
    another process (after the server died, or a reboot) is told apart from the server."""

    name: str
    pid: int
    url: str
    started: float | None  # None: the process had already exited when thaw up read it

    def running(self) -> bool | str:
        """True if the recorded process still runs; False if no process has its pid; else
        what that pid is now (another process, left alone)."""
        import psutil

        if self.started is None:
            return False
        try:
            proc = psutil.Process(self.pid)
            started = proc.create_time()
        except psutil.NoSuchProcess:
            return False
        if abs(started - self.started) > 0.05:  # create_time is read from the kernel at 10 ms or so
            return f"another process now ({one_line(' '.join(_cmdline(proc)), 80)}, started {time.ctime(started)})"
        return True


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess):
        return ["?"]


def recorded_servers(path: Path) -> list[RecordedServer]:
    """The servers in ``thaw up``'s record, checked as input: a record that is not what
    ``thaw up`` writes is refused in one line, and nothing is signalled."""

    def bad(why: str) -> UserError:
        return UserError(f"{path}: {why}; not what `thaw up` writes (check that no server runs, then remove it)")

    try:
        record = json_value(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one
        raise bad(f"not JSON ({one_line(str(exc), 120)})") from None
    if not isinstance(record, dict):
        raise bad("not a JSON object")
    servers = []
    for name, rec in record.items():
        if name not in SERVERS:
            raise bad(f"unknown server {one_line(name, 40)!r}")
        if not isinstance(rec, dict):
            raise bad(f"{name}: not an object")
        pid, url, started = rec.get("pid"), rec.get("url"), rec.get("started")
        # pid 0 or 1 would signal our own process group or init's; a bool is an int to Python
        if type(pid) is not int or pid <= 1:
            raise bad(f"{name}: pid {one_line(repr(pid), 40)} is not a process id")
        if "started" not in rec:
            raise bad(f"{name}: no start time (a record from before thaw kept one: check pid {pid} by hand)")
        if started is not None and type(started) not in (int, float):  # None: it had exited when thaw up looked
            raise bad(f"{name}: the start time is not a number")
        if not isinstance(url, str):
            raise bad(f"{name}: url is not text")
        servers.append(RecordedServer(name, pid, one_line(url, 80), None if started is None else float(started)))
    return servers


def stop_services(cfg: ThawConfig, grace_s: float = 30) -> list[str]:
    """Stop what `thaw up` started: SIGTERM to each server's session, SIGKILL after
    ``grace_s``; a pid that is now another process is left alone. Return a line for each."""
    import psutil

    path = _state_file(cfg)
    if not path.is_file():
        return []
    said, stopping, kept = [], [], False
    for server in recorded_servers(path):
        state = server.running()
        if state is True:
            try:
                os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
            except ProcessLookupError:
                state = False
            except PermissionError:
                state = "a process this user may not signal (started by another user?); the record is kept"
                kept = True
            else:
                stopping.append(server)
        if state is False:
            said.append(f"{server.name} (pid {server.pid}) was not running")
        elif state is not True:
            said.append(f"{server.name}: pid {server.pid} is {state}; left alone")
    if stopping:
        procs = []
        for server in stopping:
            with contextlib.suppress(psutil.NoSuchProcess):  # gone already, as SIGTERM asked
                procs.append(psutil.Process(server.pid))
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=10)
        killed = {p.pid for p in alive}
        said = [
            f"stopped {s.name} (pid {s.pid}{', killed after ' + str(grace_s) + ' s' if s.pid in killed else ''})"
            for s in stopping
        ] + said
    if not kept:  # a server this user could not stop is still recorded for whoever can
        path.unlink()
    return said
