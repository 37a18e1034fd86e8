"""Shared by the CLI's commands: config loading at the edge and the offline environment."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from thaw.errors import UserError
from thaw.shown import terminal_safe

DEFAULT_CONFIG = Path("configs/default.yaml")
DEMO_CONFIG = Path("configs/demo.yaml")


def say(*values: object, file=None, flush: bool = False) -> None:
    """``print`` one line of output, ``terminal_safe``: every line the CLI writes goes
    through here (ruff's T201 holds ``thaw_cli`` to it), since a line built from a tag, a
    ledger entry, a file or a server's answer may carry what a terminal acts on."""
    print(terminal_safe(" ".join(str(v) for v in values)), file=file or sys.stdout, flush=flush)


def report_user_error(exc: UserError, file=None, command: str = "thaw") -> None:
    """``thaw: error: ...`` on stderr, in the lines the error gives (``UserError.lines``),
    each terminal-safe: its message may quote what the registry or a file holds."""
    first, *more = exc.lines()
    for line in (f"{command}: error: {first}", *more):
        say(line, file=file or sys.stderr)


def say_json(value: object) -> None:
    """``value`` as indented JSON on stdout: ``json.dumps`` writes every control and
    non-ASCII character as an escape, so no line of it can act on the terminal."""
    print(json.dumps(value, indent=2, ensure_ascii=True))  # noqa: T201


def thaw_command(*words: str, config: str | None = None, workspace: str | None = None) -> str:
    """A thaw command line that can be pasted where thaw was just called: the executable
    as invoked (``thaw`` when that name on PATH is this executable, else its path as
    typed; ``python -m thaw_cli`` when run as a module), ``words``, then the ``--config``
    and ``--workspace`` the user gave, so that it reads the same store. Shell-quoted."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "__main__.py":
        line = [sys.executable, "-m", "thaw_cli"]
    else:
        on_path = shutil.which(argv0.name)
        same = on_path is not None and Path(on_path).resolve() == argv0.resolve()
        line = [argv0.name if same else str(argv0)]
    line += words
    for flag, value in (("--config", config), ("--workspace", workspace)):
        if value:
            line += [flag, value]
    return shlex.join(line)


def _prepare_environment(cfg) -> None:
    """Offline, no telemetry, and Prefect's embedded state under the state directory."""
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(cfg.state_path / "prefect")))
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")
    # Prefect waits 20 s for its embedded server; the first run after install (bytecode
    # compiled, migrations applied) took longer than that on the 2-core machine and failed
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    """The validated config of a command: its --config (or configs/default.yaml), its
    --workspace and ``overrides``; also sets the environment thaw runs in."""
    from thaw.config import load_config

    path = Path(args.config) if args.config else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    merged = {"workspace": args.workspace, **(overrides or {})}
    cfg = load_config(path, merged).resolved()
    if getattr(args, "reads_registry", False):
        _require_embedded_store(cfg)
    _prepare_environment(cfg)
    return cfg


def _require_embedded_store(cfg) -> None:
    """A command that reads registered models, typed where thaw never ran: MLflow would
    make an empty store there (and Prefect its state) and report the model missing. With
    the workspace's own store (no tracking URI configured), say where thaw looked instead,
    and create nothing."""
    from thaw.tracking import tracking_uri

    store = cfg.state_path / "mlflow.db"
    if tracking_uri(cfg) == f"sqlite:///{store}" and not store.is_file():
        raise UserError(
            f"{cfg.root}: not a thaw workspace ({store} does not exist: nothing was run here); run the "
            "command in the workspace, or give --workspace"
        )


class _DropUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed task's traceback; for a user mistake the one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return (
            not isinstance(exc, UserError)
            and "UserError" not in record.getMessage()
            and "ExpectationsFailed" not in record.getMessage()
        )


def quiet_user_error_tracebacks() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_DropUserErrorTracebacks())
