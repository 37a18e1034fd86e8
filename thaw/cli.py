"""The ``thaw`` command line. User mistakes end in one line on stderr and exit code 2.

Heavy libraries (Prefect, MLflow, Presidio, GX, torch) are imported only inside the
command that needs them, after the offline environment is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from thaw.errors import UserError

DEFAULT_CONFIG = Path("configs/default.yaml")
DEMO_CONFIG = Path("configs/demo.yaml")


def _prepare_environment(cfg) -> None:
    """Offline, no telemetry, and Prefect's embedded state under the state directory."""
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(cfg.state_path / "prefect")))
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_API_HOST", "127.0.0.1")


def _config(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    from thaw.config import load_config

    path = Path(args.config) if args.config else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    merged = {"workspace": args.workspace, **(overrides or {})}
    cfg = load_config(path, merged).resolved()
    _prepare_environment(cfg)
    return cfg


class _DropUserErrorTracebacks(logging.Filter):
    """Prefect logs a failed task's traceback; for a user mistake the one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, UserError) and "UserError" not in record.getMessage() and "ExpectationsFailed" not in record.getMessage()


def _run_pipeline(cfg, summary_json: str | None) -> dict:
    from tasks.ingest import ColumnMap, preflight_inputs

    d = cfg.data
    preflight_inputs({"train": d.train, "validation": d.validation, "test": d.test},
                     ColumnMap(text=d.text_column, label=d.label_column, id=d.id_column))
    from flows.pipeline import thaw_pipeline

    _quiet_user_errors()

    summary_path = thaw_pipeline(cfg)
    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    return summary


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args, {
        "data.train": args.train, "data.validation": args.validation, "data.test": args.test,
        "data.text_column": args.text_column, "data.label_column": args.label_column,
        "data.id_column": args.id_column, "model_name": args.model_name,
    })
    if cfg.data.train is None:
        raise UserError("no training data: pass --train FILE or set data.train in the config")
    summary = _run_pipeline(cfg, args.summary_json)
    _print_outcome(cfg, summary, None)
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from tasks.ingest import ColumnMap, preflight_inputs

    cfg = _config(args, {
        "data.train": args.input, "data.validation": args.validation, "data.test": args.test,
        "data.text_column": args.text_column, "data.label_column": args.label_column,
        "data.id_column": args.id_column, "data.output_format": args.format,
    })
    d = cfg.data
    preflight_inputs({"input": d.train, "validation": d.validation, "test": d.test},
                     ColumnMap(text=d.text_column, label=d.label_column, id=d.id_column))
    from flows.curation import curation_flow

    _quiet_user_errors()
    written = curation_flow(cfg, Path(args.output))
    report = json.loads(Path(written["report"]).read_text(encoding="utf-8"))
    print(f"curated into {args.output}: " + ", ".join(f"{s} {n} rows" for s, n in report["splits"].items()))
    for stage in report["stages"]:
        if stage["removed"]:
            print(f"  {stage['stage']:<32} removed " + ", ".join(f"{k}={v}" for k, v in stage["removed"].items()))
    print(f"  PII: {report['pii']['rows_changed']} rows changed at {report['pii']['rows_per_s']:.0f} rows/s; "
          f"report {written['report']}")
    return 0


def _quiet_user_errors() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_DropUserErrorTracebacks())


def cmd_demo(args: argparse.Namespace) -> int:
    from thaw.demo_data import write_demo_data

    args.config = args.config or str(DEMO_CONFIG)
    cfg = _config(args)
    started = time.perf_counter()
    write_demo_data(cfg.root)
    _check_demo_matches_data_dvc(cfg.root)
    summary = _run_pipeline(cfg, args.summary_json)
    _print_outcome(cfg, summary, time.perf_counter() - started)
    return 0


def _check_demo_matches_data_dvc(root: Path) -> None:
    """Say whether the regenerated demo data is byte-identical to what data.dvc pins."""
    import yaml

    from tasks.versioning import dvc_directory_md5

    pinned = root / "data.dvc"
    if not pinned.is_file():
        return
    recorded = yaml.safe_load(pinned.read_text(encoding="utf-8"))["outs"][0]["md5"]
    actual = dvc_directory_md5(root / "data")
    if actual == recorded:
        print(f"demo data regenerated: matches data.dvc ({recorded})")
    else:
        print(f"warning: data/ ({actual}) differs from what data.dvc pins ({recorded}); "
              "the run versions what is there now", file=sys.stderr)


def _print_outcome(cfg, summary: dict, seconds: float | None) -> None:
    from tasks.registry import tracking_uri

    if summary.get("skipped"):
        print(f"\nthaw skipped training: {summary['skipped']} (scheduling.on_concurrent_run=skip)")
        return

    model, test = summary["model"], summary["test"]["metrics"]
    ref = f"{model['name']}@{model['alias']}"
    took = f" in {seconds / 60:.1f} min" if seconds else ""
    splits = summary["curation"]["splits"]
    print(f"\nthaw finished{took}.")
    print(f"  registered   {model['name']} version {model['version']} as '{model['alias']}' (rung: {summary['selected_rung']})")
    print(f"  test         accuracy {test['accuracy']:.3f} [{test['accuracy_low']:.3f}, {test['accuracy_high']:.3f}], "
          f"macro-F1 {test['macro_f1']:.3f} on {int(test['examples'])} rows")
    print(f"  curated      train {splits['train']}, validation {splits['validation']}, test {splits['test']} rows "
          f"(PII scrubbed at {summary['curation']['pii']['rows_per_s']:.0f} rows/s)")
    print(f"  summary      {cfg.state_path / 'runs' / summary['mlflow']['run_id'] / 'summary.json'}")
    print("\nLook at it:")
    print(f"  MLflow UI    .venv/bin/mlflow ui --backend-store-uri {tracking_uri(cfg)} --host 127.0.0.1 --port 5000")
    print(f"  lineage      .venv/bin/thaw lineage {ref}")
    print("  models       .venv/bin/thaw models")
    print(f"  approve      .venv/bin/thaw approve {model['name']} {model['version']} --reason \"reviewed transfer note and test report\"")
    print(f"  predict      .venv/bin/thaw predict {model['name']}@champion --input FILE.csv --output predictions.csv")


def cmd_models(args: argparse.Namespace) -> int:
    from tasks.registry import client_for

    cfg = _config(args)
    client = client_for(cfg)
    rows = []
    for rm in client.search_registered_models():
        aliases = {v: k for k, v in (rm.aliases or {}).items()} if isinstance(rm.aliases, dict) else {}
        for mv in client.search_model_versions(f"name='{rm.name}'"):
            rows.append({"name": rm.name, "version": mv.version, "aliases": sorted(a for a, v in (rm.aliases or {}).items() if str(v) == str(mv.version)),
                         "rung": mv.tags.get("thaw.rung", ""), "approval": mv.tags.get("thaw.approval", ""),
                         "test_accuracy": mv.tags.get("thaw.test_accuracy", ""), "run_id": mv.run_id})
    rows.sort(key=lambda r: (r["name"], int(r["version"])))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no registered models yet (run `thaw demo` or `thaw run`)")
    else:
        for r in rows:
            print(f"{r['name']:<28} v{r['version']:<4} {','.join(r['aliases']) or '-':<20} {r['rung']:<8} "
                  f"acc={r['test_accuracy'] or '-':<7} {r['approval']}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from tasks.lineage import describe_lineage

    cfg = _config(args)
    info = describe_lineage(cfg, args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m, d = info["model"], info["data"]
    print(f"{m['name']} version {m['version']} (aliases: {', '.join(m['aliases']) or '-'}, approval: {m['approval'] or '-'})")
    print(f"  run            {info['run']['id']} ({info['run']['status']}) in {info['run']['tracking_uri']}")
    print(f"  prefect run    {info['prefect_flow_run_id']}")
    print(f"  raw data       {d['raw']['dvc_file']} md5 {d['raw']['md5']}")
    for split, f in d["curated"].items():
        print(f"  {split:<14} {f['path']} md5 {f['md5']}")
    print(f"  DVC remote     {d['dvc_remote']}")
    print(f"  git commit     {info['git_commit']}")
    print(f"  config digest  {info['config_digest']}")
    print(f"  backbone       {info['backbone']['name']} ({info['backbone']['source']}) rev {str(info['backbone']['revision'])[:16]}")
    print(f"  rung           {info['rung']} ({info['transfer'].get('method', '-')}): {info['transfer'].get('reason', '-')}")
    approval = info["approval"]
    if approval.get("by"):
        print(f"  approval       {approval['state']} by {approval['by']} at {approval.get('at')}: {approval.get('reason')}")
    for name, uri in info["reports"].items():
        print(f"  report         {uri}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from tasks.promotion import approve

    cfg = _config(args)
    decision = approve(cfg, args.model, args.version, args.reason, force=args.force)
    state = "FORCED to champion" if decision.forced else "champion"
    print(f"{args.model} v{args.version} is now {state}:")
    for reason in decision.reasons:
        print(f"  - {reason}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from tasks.promotion import reject

    reject(_config(args), args.model, args.version, args.reason)
    print(f"{args.model} v{args.version} rejected")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.promotion import rollback

    target = rollback(_config(args), args.model, args.reason)
    print(f"{args.model}: champion is back to v{target}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from tasks.promotion import read_ledger

    cfg = _config(args)
    try:
        entries = read_ledger(cfg, args.model)
    except Exception:
        raise UserError(f"no registered model {args.model!r}") from None
    if args.json:
        print(json.dumps(entries, indent=2))
    for e in ([] if args.json else entries):
        extra = f" (was v{e['previous_champion']})" if e.get("previous_champion") else ""
        forced = " FORCED" if e.get("forced") else ""
        why = f" [{'; '.join(e['gate'])}]" if e["action"] == "refused" else ""
        print(f"{e['seq']:>3} {e['at']} {e['action']:<8} v{e['version']}{extra}{forced} by {e['by']}: {e['reason']}{why}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from tasks.restore import restore_data

    restored = restore_data(_config(args), args.model, Path(args.to))
    for split, path in restored.items():
        print(f"{split:<11} {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tasks.batch_prediction import predict_file

    cfg = _config(args)
    rows = predict_file(cfg, args.model, Path(args.input), Path(args.output), args.text_column or cfg.data.text_column,
                        args.id_column if args.id_column is not None else cfg.data.id_column)
    print(f"wrote {rows} predictions to {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``mlflow models serve`` on the registered pyfunc, on loopback by default."""
    import subprocess

    from tasks.lineage import resolve_version
    from tasks.registry import tracking_uri

    cfg = _config(args)
    mv = resolve_version(cfg, args.model)
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts uvicorn by name: it must be on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(cfg), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    print(f"serving {mv.name} v{mv.version} on http://{args.host}:{args.port}/invocations", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{mv.name}/{mv.version}",
           "--env-manager", "local", "-h", args.host, "-p", str(args.port)]
    return subprocess.call(cmd, env=env)


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
    print(f"serving deployment thaw-pipeline/{name} ({args.cron or f'every {args.interval}s'}); Ctrl-C stops", flush=True)
    thaw_pipeline.serve(name=name, cron=args.cron, interval=args.interval, limit=1,
                        parameters={"cfg": cfg.model_dump(mode="json")}, print_starting_message=False)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from thaw.services import start_services

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
    from thaw.services import stop_services

    stopped = stop_services(_config(args))
    print("stopped " + (", ".join(stopped) if stopped else "nothing (no services recorded)"))
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: configs/default.yaml if present)")
    p.add_argument("--workspace", default=None, help="project directory holding data/, .dvc and the state dir (default: .)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thaw", description="Adapt a pretrained text encoder to your labelled text, traceably.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate the demo data and run the whole pipeline on it")
    _add_common(demo)
    demo.add_argument("--summary-json", help="also write the run summary here")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run the pipeline on your own data")
    _add_common(run)
    for flag in ("train", "validation", "test"):
        run.add_argument(f"--{flag}", help=f"{flag} file (CSV, TSV, JSONL or Parquet)")
    run.add_argument("--text-column")
    run.add_argument("--label-column")
    run.add_argument("--id-column")
    run.add_argument("--model-name")
    run.add_argument("--summary-json", help="write the machine-readable run summary here")
    run.set_defaults(func=cmd_run)
    curate = sub.add_parser("curate", help="curation alone: scrub, deduplicate, split, validate, account")
    _add_common(curate)
    curate.add_argument("--input", required=True, help="labelled file (CSV, TSV, JSONL or Parquet)")
    curate.add_argument("--validation", help="your own validation file (deduplicated against, never re-split)")
    curate.add_argument("--test", help="your own test file (deduplicated against, never re-split)")
    curate.add_argument("--text-column")
    curate.add_argument("--label-column")
    curate.add_argument("--id-column")
    curate.add_argument("--format", choices=("csv", "parquet"))
    curate.add_argument("--output", required=True, help="directory for the split files and the report")
    curate.set_defaults(func=cmd_curate)
    models = sub.add_parser("models", help="registered models, versions and aliases")
    _add_common(models)
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
    lineage = sub.add_parser("lineage", help="trace a model version to its data, code and backbone")
    _add_common(lineage)
    lineage.add_argument("model", help="NAME@ALIAS or NAME/VERSION")
    lineage.add_argument("--json", action="store_true")
    lineage.set_defaults(func=cmd_lineage)
    for verb, helptext in (("approve", "approve a challenger; promotes it to champion if the gate passes"),
                           ("reject", "reject a challenger")):
        p = sub.add_parser(verb, help=helptext)
        _add_common(p)
        p.add_argument("model")
        p.add_argument("version")
        p.add_argument("--reason", required=True)
        if verb == "approve":
            p.add_argument("--force", action="store_true", help="promote even if the gate fails (recorded as forced)")
        p.set_defaults(func=cmd_approve if verb == "approve" else cmd_reject)
    rb = sub.add_parser("rollback", help="put the previous champion back")
    _add_common(rb)
    rb.add_argument("model")
    rb.add_argument("--reason", required=True)
    rb.set_defaults(func=cmd_rollback)
    ledger = sub.add_parser("ledger", help="the promotion ledger of a model")
    _add_common(ledger)
    ledger.add_argument("model")
    ledger.add_argument("--json", action="store_true")
    ledger.set_defaults(func=cmd_ledger)
    restore = sub.add_parser("restore-data", help="restore a version's exact train/validation/test files from DVC")
    _add_common(restore)
    restore.add_argument("model", help="NAME@ALIAS or NAME/VERSION")
    restore.add_argument("--to", required=True)
    restore.set_defaults(func=cmd_restore)
    predict = sub.add_parser("predict", help="batch prediction with a registered model")
    _add_common(predict)
    predict.add_argument("model", help="NAME@ALIAS or NAME/VERSION")
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--text-column")
    predict.add_argument("--id-column")
    predict.set_defaults(func=cmd_predict)
    serve = sub.add_parser("serve", help="serve a registered model over HTTP (mlflow models serve)")
    _add_common(serve)
    serve.add_argument("model", help="NAME@ALIAS or NAME/VERSION")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001)
    serve.set_defaults(func=cmd_serve)
    schedule = sub.add_parser("schedule", help="run the pipeline on a schedule as a Prefect deployment (serve process)")
    _add_common(schedule)
    schedule.add_argument("--cron", help="cron schedule, e.g. '0 3 * * *'")
    schedule.add_argument("--interval", type=int, help="or an interval in seconds")
    schedule.add_argument("--train")
    schedule.add_argument("--model-name")
    schedule.add_argument("--name", help="deployment name (default: MODEL-scheduled)")
    schedule.set_defaults(func=cmd_schedule)
    up = sub.add_parser("up", help="start the Prefect and MLflow servers on loopback (background)")
    _add_common(up)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--prefect-port", type=int, default=4200)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop what `thaw up` started")
    _add_common(down)
    down.set_defaults(func=cmd_down)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``thaw`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"thaw: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thaw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
