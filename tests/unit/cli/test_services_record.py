"""`thaw down` and `thaw up` read back the record `thaw up` wrote (``services.json``):
pids to signal. It is input: a pid the system has since given to another process is left
alone, and a record that is not what `thaw up` writes is refused before anything is
signalled. The servers here are plain processes; the real ones are started in
tests/e2e/cli/test_scheduling.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import psutil
import pytest

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw_cli.services import recorded_servers, start_services, stop_services

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# a server that ignores SIGTERM, and says when it does
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)",
]


@pytest.fixture
def cfg(tmp_path):
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    cfg.state_path.mkdir(parents=True)
    return cfg


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:  # not reaped by the code under test (whose pid could be another's by now)
            proc.kill()
            proc.wait(timeout=10)


def _record(cfg, **servers: dict) -> None:
    (cfg.state_path / "services.json").write_text(json.dumps(servers), encoding="utf-8")


def _as_recorded(proc: subprocess.Popen, port: int = 5000) -> dict:
    return {"pid": proc.pid, "url": f"http://127.0.0.1:{port}", "started": psutil.Process(proc.pid).create_time()}


def test_the_recorded_servers_are_stopped_and_one_ignoring_sigterm_is_killed(cfg, processes):
    polite, stubborn = processes(SLEEPER), processes(STUBBORN)
    assert stubborn.stdout.readline().strip() == "ready"  # its handler is set
    _record(cfg, mlflow=_as_recorded(polite), prefect=_as_recorded(stubborn))

    said = stop_services(cfg, grace_s=1)

    assert said == [f"stopped mlflow (pid {polite.pid})", f"stopped prefect (pid {stubborn.pid}, killed after 1 s)"]
    assert not psutil.pid_exists(polite.pid) and not psutil.pid_exists(stubborn.pid)  # gone, and reaped
    assert not (cfg.state_path / "services.json").exists()
    assert stop_services(cfg) == []  # nothing recorded: nothing to do


def test_a_pid_given_to_another_process_since_is_left_alone(cfg, processes):
    other = processes(SLEEPER)  # what now has the pid the record names
    recorded = _as_recorded(other) | {"started": psutil.Process(other.pid).create_time() - 3600}
    _record(cfg, mlflow=recorded, prefect=_as_recorded(other) | {"pid": 2**22 + 7})  # and one with no process

    said = stop_services(cfg, grace_s=1)

    assert said[0].startswith(f"mlflow: pid {other.pid} is another process now (")
    assert said[0].endswith("; left alone") and "python" in said[0]  # what it is, for whoever looks
    assert said[1] == f"prefect (pid {2**22 + 7}) was not running"
    time.sleep(0.2)
    assert other.poll() is None  # not signalled
    assert not (cfg.state_path / "services.json").exists()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{'mlflow': 1", "not JSON"),
        ('{"mlflow": ' + "[" * 5000 + "]" * 5000 + "}", "not JSON (arrays or objects nested too deeply to read)"),
        ("[1, 2]", "not a JSON object"),
        ('{"grafana": {"pid": 4242, "url": "http://x", "started": 1.0}}', "unknown server 'grafana'"),
        ('{"mlflow": {"pid": 0, "url": "http://x", "started": 1.0}}', "mlflow: pid 0 is not a process id"),
        ('{"mlflow": {"pid": 1, "url": "http://x", "started": 1.0}}', "mlflow: pid 1 is not a process id"),
        ('{"mlflow": {"pid": -4242, "url": "http://x", "started": 1.0}}', "mlflow: pid -4242 is not a process id"),
        ('{"mlflow": {"pid": true, "url": "http://x", "started": 1.0}}', "mlflow: pid True is not a process id"),
        ('{"mlflow": {"pid": "4242; rm -rf /", "url": "http://x", "started": 1.0}}', "is not a process id"),
        ('{"mlflow": {"pid": 4242, "url": "http://x"}}', "mlflow: no start time"),
        ('{"mlflow": {"pid": 4242, "url": "http://x", "started": "yesterday"}}', "the start time is not a number"),
        ('{"prefect": "4242"}', "prefect: not an object"),
    ],
)
def test_a_record_that_is_not_what_thaw_up_writes_is_refused_in_one_line_and_nothing_is_signalled(cfg, text, why):
    path = cfg.state_path / "services.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as raised:
        stop_services(cfg)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and why in message and "\n" not in message
    assert path.read_text(encoding="utf-8") == text  # kept, to be looked at
    with pytest.raises(UserError):
        recorded_servers(path)


def test_a_server_that_exited_before_thaw_up_read_its_start_time_is_not_running(cfg):
    _record(cfg, mlflow={"pid": 4242, "url": "http://127.0.0.1:5000", "started": None})
    assert stop_services(cfg) == ["mlflow (pid 4242) was not running"]  # whatever has pid 4242 now


def test_up_refuses_while_the_recorded_servers_run(cfg, processes):
    server = processes(SLEEPER)
    _record(cfg, mlflow=_as_recorded(server))
    with pytest.raises(UserError, match=rf"already running: mlflow \(pid {server.pid}, http://127.0.0.1:5000\)"):
        start_services(cfg, 5000, 4200)
    assert server.poll() is None


def test_up_replaces_a_record_whose_servers_are_gone_and_refuses_a_port_in_use(cfg, processes, capsys):
    gone = processes(SLEEPER)
    recorded = _as_recorded(gone)
    gone.kill()
    gone.wait(timeout=10)
    _record(cfg, mlflow=recorded)
    with socket.socket() as taken:  # another server listening where MLflow's should
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"port {port} is in use, so the mlflow server cannot listen there"):
            start_services(cfg, port, port + 1 if port < 65535 else port - 1)
    assert "are no longer running (a reboot?): starting new ones" in capsys.readouterr().out
    assert not (cfg.state_path / "services.json").exists()  # nothing was started


@pytest.mark.parametrize("value", ["0", "65536", "-1", "5000x", "٥٠٠٠", "99999999999999999999"])
def test_a_port_that_is_not_one_gets_one_line(tmp_path, capsys, value):
    from thaw_cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["up", "--workspace", str(tmp_path), "--mlflow-port", value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a port (1 to 65535)" in capsys.readouterr().err
    assert not (tmp_path / ".thaw" / "services.json").exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run a process as another user"
)
def test_a_server_this_user_may_not_signal_is_said_and_stays_recorded(cfg, processes):
    """As root, the server runs as nobody and `thaw down` runs without the capability to
    signal other users' processes (util-linux's setpriv), as a second user would."""
    server = processes(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *SLEEPER])
    _record(cfg, mlflow=_as_recorded(server))
    code = (
        "import sys; from thaw.config import ThawConfig; from thaw_cli.services import stop_services; "
        "print(stop_services(ThawConfig.model_validate({'workspace': sys.argv[1]}), grace_s=1))"
    )
    cmd = ["setpriv", "--bounding-set=-kill", "--inh-caps=-kill", sys.executable, "-c", code, str(cfg.root)]
    said = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert said.returncode == 0, said.stderr[-2000:]
    assert f"mlflow: pid {server.pid} is a process this user may not signal" in said.stdout
    assert server.poll() is None and (cfg.state_path / "services.json").exists()
