"""CLI commands for operations: schedule, up, down."""

from __future__ import annotations

import argparse
import os

from thaw.errors import UserError
from thaw_cli.common import _config


def cmd_schedule(args: argparse.Namespace) -> int:
    """Serve the pipeline as a Prefect deployment with a schedule (blocks; Ctrl-C stops)."""
    cfg = _config(args, {"data.train": args.train, "model_name": args.model_name})
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("scheduling needs a Prefect server: start one with `thaw up` and export PREFECT_API_URL")
    if cfg.data.train is None:
        raise UserError("no training data: pass --train FILE or set data.train in the config")
    from thaw_cli.scheduler import build_schedule, check_timezone, local_timezone, serve_pipeline

    timezone = check_timezone(args.timezone or local_timezone())
    schedule = build_schedule(args.cron, args.interval, timezone)
    name = args.name or f"{cfg.model_name}-scheduled"
    when = f"cron '{args.cron}' in {timezone}" if args.cron else f"every {args.interval}s"
    print(
        f"serving deployment thaw-pipeline/{name} ({when}); SIGTERM or Ctrl-C stops "
        f"(a run in flight gets {args.stop_grace:.0f}s to finish, then is cancelled)",
        flush=True,
    )
    serve_pipeline(cfg, name, schedule, args.stop_grace)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from thaw_cli.services import start_services

    cfg = _config(args)
    urls = start_services(cfg, args.mlflow_port, args.prefect_port)
    print(f"MLflow UI and tracking server  {urls['mlflow']}")
    print(f"Prefect UI                     {urls['prefect']}")
    print(f"Prefect scheduler              working (created a probe deployment's runs in {urls['scheduler_seconds']}s)")
    print("Point thaw at them (config only):")
    print(f"  tracking:\n    tracking_uri: {urls['mlflow']}        # in your config YAML")
    print(f"  export PREFECT_API_URL={urls['prefect']}/api")
    print("Stop them with `thaw down`.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from thaw_cli.services import stop_services

    stopped = stop_services(_config(args))
    print("stopped " + (", ".join(stopped) if stopped else "nothing (no services recorded)"))
    return 0
