"""CLI commands for operations: schedule, monitor, up, ui, down, state."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from thaw.datasets import ColumnMap
from thaw.errors import UserError
from thaw_cli.common import config_from_args, say


def cmd_schedule(args: argparse.Namespace) -> int:
    """Serve the pipeline as a Prefect deployment with a schedule (blocks; Ctrl-C stops)."""
    cfg = config_from_args(args, {"data.train": args.train, "model_name": args.model_name})
    if cfg.data.train is None:
        raise UserError("no training data: pass --train FILE or set data.train in the config")
    from thaw_cli.scheduler import build_schedule, check_timezone, local_timezone, serve_pipeline

    timezone = check_timezone(args.timezone or local_timezone())
    schedule = build_schedule(args.cron, args.interval, timezone)  # checked before the server is asked for
    _require_prefect_server("scheduling")
    name = args.name or f"{cfg.model_name}-scheduled"
    when = f"cron '{args.cron}' in {timezone}" if args.cron else f"every {args.interval}s"
    say(
        f"serving deployment thaw-pipeline/{name} ({when}); SIGTERM or Ctrl-C stops "
        f"(a run in flight gets {args.stop_grace:.0f}s to finish, then is cancelled)",
        flush=True,
    )
    serve_pipeline(cfg, name, schedule, args.stop_grace)
    return 0


def _require_prefect_server(what: str) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError(f"{what} needs a Prefect server: start one with `thaw up` and export PREFECT_API_URL")


def cmd_monitor(args: argparse.Namespace) -> int:
    """Drift of newly arrived rows against what a model version learned from; on a schedule
    with --cron/--interval."""
    cfg = config_from_args(args, {"model_name": args.model.split("@")[0].split("/")[0]})
    from thaw.ingest import has_column, preflight_inputs

    source = Path(args.input).resolve()
    label = args.label_column
    if label is None and not args.unlabelled and has_column(source, cfg.data.label_column, "--input"):
        label = cfg.data.label_column
    params = {
        "model": args.model,
        "arrivals_file": str(source),
        "text_column": args.text_column or cfg.data.text_column,
        "label_column": label,
        "id_column": args.id_column or cfg.data.id_column,
        "retrain_deployment": args.retrain_deployment,
    }
    preflight_inputs({"--input": source}, ColumnMap(params["text_column"], label, params["id_column"]))
    scheduled = args.cron is not None or args.interval is not None  # --interval 0 is refused, not ignored
    if scheduled:
        from thaw_cli.scheduler import build_schedule, check_timezone, local_timezone, serve_flow

        schedule = build_schedule(args.cron, args.interval, check_timezone(args.timezone or local_timezone()))
    if args.retrain_deployment:
        _require_prefect_server("--retrain-deployment")
    if scheduled:
        _require_prefect_server("scheduling")
        from flows.monitoring import thaw_monitor

        name = args.name or f"{cfg.model_name}-monitor"
        say(f"serving deployment thaw-monitor/{name}; SIGTERM or Ctrl-C stops", flush=True)
        description = f"drift of {args.model} on {source}"
        serve_flow(
            thaw_monitor,
            name,
            schedule,
            {"cfg": cfg.model_dump(mode="json"), **params},
            description,
            cfg,
            args.stop_grace,
        )
        return 0
    from flows.monitoring import thaw_monitor
    from thaw_cli.common import quiet_user_error_tracebacks

    quiet_user_error_tracebacks()
    say(f"comparing {source} ({'labelled: ' + label if label else 'unlabelled'}) with what {args.model} learned from")
    report_path = Path(thaw_monitor(cfg, **params))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    verdict = "DRIFT" if report["drifted"] else "no drift"
    say(f"{verdict}: {report['rows_compared']['new']} new rows, false-alarm rate {report['false_alarm_rate']}")
    for line in report["fired"]:  # names classes from the data
        say(f"  - {line}")
    say(f"report: {report_path.with_suffix('.md')} (and drift.json, drift.png beside it)")
    retrain = report.get("retraining")
    if retrain:
        started = f"; training run {retrain['flow_run_id']} started" if retrain.get("flow_run_id") else ""
        say(f"combined training data: {retrain['file']} ({retrain['rows']} rows){started}")
        if not retrain.get("flow_run_id"):
            say(
                f"  retrain with: thaw run --train {retrain['file']}"
                + (f" --config {args.config}" if args.config else "")
            )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from thaw_cli.services import start_services

    cfg = config_from_args(args)
    urls = start_services(cfg, args.mlflow_port, args.prefect_port)
    say(f"MLflow UI and tracking server  {urls['mlflow']}")
    say(f"Prefect UI                     {urls['prefect']}")
    say(f"Prefect scheduler              working (created a probe deployment's runs in {urls['scheduler_seconds']}s)")
    say("Point thaw at them:")
    say(f"  export MLFLOW_TRACKING_URI={urls['mlflow']}   # or tracking.tracking_uri in your config YAML")
    say(f"  export PREFECT_API_URL={urls['prefect']}/api")
    say("Stop them with `thaw down`.")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from thaw_cli.services import serve_ui

    return serve_ui(config_from_args(args), args.port)


def cmd_down(args: argparse.Namespace) -> int:
    from thaw_cli.services import stop_services

    for line in stop_services(config_from_args(args)) or ["nothing to stop (no servers recorded by `thaw up`)"]:
        say(line)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    """`thaw state`: the caches, checkpoints and run directories in the state directory, by kind; with
    ``--prune``, the least recently used removed until they fit the budget."""
    import time

    from thaw.state_budget import prune, state_entries

    cfg = config_from_args(args)
    budget_gb = args.budget_gb if args.budget_gb is not None else cfg.state_budget_gb
    if args.prune:
        if budget_gb is None:
            raise UserError("state_budget_gb is null in the config (no budget): give --budget-gb to prune")
        pruned = prune(cfg.state_path, int(budget_gb * 1e9), since=time.time())
        say(pruned.describe())
        return 1 if pruned.busy else 0
    entries = state_entries(cfg.state_path)
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))  # noqa: E731
    say(f"{'kind':<12} {'entries':>7} {'GB':>8}  last used (UTC), oldest .. newest")
    for kind in sorted({e.kind for e in entries}):
        of = [e for e in entries if e.kind == kind]
        used = sorted(e.used for e in of)
        size = sum(e.size for e in of) / 1e9
        say(f"{kind:<12} {len(of):>7} {size:>8.2f}  {stamp(used[0])} .. {stamp(used[-1])}")
    total = sum(e.size for e in entries) / 1e9
    limit = f"{budget_gb:g} GB (state_budget_gb)" if budget_gb is not None else "none (state_budget_gb: null)"
    say(f"{'all':<12} {len(entries):>7} {total:>8.2f}  budget {limit}; in {cfg.state_path}")
    return 0
