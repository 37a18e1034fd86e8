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
    if not (args.cron or args.interval):
        raise UserError("give --cron 'MIN HOUR DOM MON DOW' or --interval SECONDS")
    from flows.pipeline import thaw_pipeline

    name = args.name or f"{cfg.model_name}-scheduled"
    print(
        f"serving deployment thaw-pipeline/{name} ({args.cron or f'every {args.interval}s'}); Ctrl-C stops", flush=True
    )
    thaw_pipeline.serve(
        name=name,
        cron=args.cron,
        interval=args.interval,
        limit=1,
        parameters={"cfg": cfg.model_dump(mode="json")},
        print_starting_message=False,
    )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from thaw_cli.services import start_services

    cfg = _config(args)
    urls = start_services(cfg, args.mlflow_port, args.prefect_port)
    print(f"MLflow UI and tracking server  {urls['mlflow']}")
    print(f"Prefect UI                     {urls['prefect']}")
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
