"""The ``thaw`` command line. User mistakes end in one line on stderr and exit code 2.

Heavy libraries (Prefect, MLflow, Presidio, GX, torch) are imported only inside the
command that needs them, after the offline environment is set.
"""

from __future__ import annotations

import argparse
import sys

from thaw.errors import UserError, tracking_access_problem
from thaw_cli.commands_ops import cmd_down, cmd_schedule, cmd_up
from thaw_cli.commands_pipeline import cmd_curate, cmd_demo, cmd_run
from thaw_cli.commands_registry import (
    cmd_approve,
    cmd_ledger,
    cmd_lineage,
    cmd_models,
    cmd_predict,
    cmd_reject,
    cmd_restore,
    cmd_rollback,
    cmd_serve,
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: configs/default.yaml if present)")
    p.add_argument(
        "--workspace", default=None, help="project directory holding data/, .dvc and the state dir (default: .)"
    )


def _add_columns(p: argparse.ArgumentParser) -> None:
    """The column overrides shared by every command that reads labelled data."""
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--id-column", help="carried through every stage unchanged")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thaw", description="Adapt a pretrained text encoder to your labelled text, traceably."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate the demo data and run the whole pipeline on it")
    _add_common(demo)
    demo.add_argument("--summary-json", help="also write the run summary here")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run the pipeline on your own data")
    _add_common(run)
    for flag in ("train", "validation", "test"):
        run.add_argument(f"--{flag}", help=f"{flag} file (CSV, TSV, JSONL or Parquet)")
    _add_columns(run)
    run.add_argument("--model-name")
    run.add_argument("--summary-json", help="write the machine-readable run summary here")
    run.set_defaults(func=cmd_run)
    curate = sub.add_parser("curate", help="curation alone: scrub, deduplicate, split, validate, account")
    _add_common(curate)
    curate.add_argument("--input", required=True, help="labelled file (CSV, TSV, JSONL or Parquet)")
    curate.add_argument("--validation", help="your own validation file (deduplicated against, never re-split)")
    curate.add_argument("--test", help="your own test file (deduplicated against, never re-split)")
    _add_columns(curate)
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
    for verb, helptext in (
        ("approve", "approve a challenger; promotes it to champion if the gate passes"),
        ("reject", "reject a challenger"),
    ):
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
    except Exception as exc:
        problem = tracking_access_problem(exc)
        if problem is None:
            raise
        print(f"thaw: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
