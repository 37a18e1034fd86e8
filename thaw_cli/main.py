"""The ``thaw`` command line. User mistakes end in one line on stderr and exit code 2.

Heavy libraries (Prefect, MLflow, Presidio, GX, torch) are imported only inside the
command that needs them, after the offline environment is set.
"""

from __future__ import annotations

import argparse
import sys

from thaw.errors import ExpectationsFailed, UserError, tracking_access_problem
from thaw_cli.commands_ops import cmd_down, cmd_monitor, cmd_schedule, cmd_state, cmd_ui, cmd_up
from thaw_cli.commands_pipeline import cmd_curate, cmd_demo, cmd_run
from thaw_cli.commands_registry import (
    cmd_approve,
    cmd_cosign,
    cmd_keys,
    cmd_ledger,
    cmd_lineage,
    cmd_models,
    cmd_predict,
    cmd_reject,
    cmd_restore,
    cmd_rollback,
    cmd_unlock,
)
from thaw_cli.commands_serving import cmd_canary, cmd_feedback, cmd_serve
from thaw_cli.common import report_user_error, say

MODEL_REF = "NAME@ALIAS or NAME/VERSION"


def _model_name(value: str) -> str:
    """argparse type: a model name thaw gives. A name reaches registry search filters, so
    one with a quote (anyone may create such a model in the MLflow UI) is refused here."""
    from thaw.config import model_name_problem

    if problem := model_name_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def _reason(value: str) -> str:
    """argparse type: a reason the ledger can keep. Bytes the terminal sent that are not
    UTF-8 (a Latin-1 paste) reach Python as lone surrogates, which no ledger entry, tag or
    signature can encode: refused here, before the intent is written."""
    from thaw.datasets import lone_surrogate

    if bad := lone_surrogate(value):
        raise argparse.ArgumentTypeError(f"holds a byte that is not UTF-8 (read as {bad}); retype it")
    return value


def _model_ref(value: str) -> str:
    """argparse type: NAME, NAME@ALIAS or NAME/VERSION (``thaw.config.model_ref_problem``)."""
    from thaw.config import model_ref_problem

    if problem := model_ref_problem(value):
        raise argparse.ArgumentTypeError(problem)
    return value


def _version_number(value: str) -> str:
    """argparse type: a model version as MLflow numbers them (1, 2, ...)."""
    from thaw.config import VERSION

    if not VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value[:80]!r} is not a version number")
    return value


def _command(sub, name: str, helptext: str, func) -> argparse.ArgumentParser:
    """A subcommand with the options every command takes (config, workspace)."""
    p = sub.add_parser(name, help=helptext)
    p.add_argument("--config", help="YAML config (default: configs/default.yaml if present)")
    p.add_argument("--workspace", help="project directory holding data/, .dvc and the state dir (default: .)")
    p.set_defaults(func=func)
    return p


def _add_columns(p: argparse.ArgumentParser) -> None:
    """The column overrides shared by every command that reads labelled data."""
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--id-column", help="carried through every stage unchanged")


def _pipeline_commands(sub) -> None:
    demo = _command(sub, "demo", "generate the demo data and run the whole pipeline on it", cmd_demo)
    demo.add_argument("--summary-json", help="also write the run summary here")
    run = _command(sub, "run", "run the pipeline on your own data", cmd_run)
    for flag in ("train", "validation", "test"):
        run.add_argument(f"--{flag}", help=f"{flag} file (CSV, TSV, JSONL or Parquet)")
    _add_columns(run)
    run.add_argument("--model-name")
    run.add_argument("--summary-json", help="write the machine-readable run summary here")
    curate = _command(sub, "curate", "curation alone: scrub, deduplicate, split, validate, account", cmd_curate)
    curate.add_argument("--input", required=True, help="labelled file (CSV, TSV, JSONL or Parquet)")
    curate.add_argument("--validation", help="your own validation file (deduplicated against, never re-split)")
    curate.add_argument("--test", help="your own test file (deduplicated against, never re-split)")
    _add_columns(curate)
    curate.add_argument("--format", choices=("csv", "parquet"))
    curate.add_argument("--output", required=True, help="directory for the split files and the report")


def _registry_commands(sub) -> None:
    _command(sub, "models", "registered models, versions and aliases", cmd_models).add_argument(
        "--json", action="store_true"
    )
    lineage = _command(sub, "lineage", "trace a model version to its data, code and backbone", cmd_lineage)
    lineage.add_argument("model", type=_model_ref, help=MODEL_REF)
    lineage.add_argument("--json", action="store_true")
    approve = _command(sub, "approve", "approve a challenger; promotes it to champion if the gate passes", cmd_approve)
    reject = _command(sub, "reject", "reject a challenger", cmd_reject)
    for p in (approve, reject):
        p.add_argument("model", type=_model_name)
        p.add_argument("version", type=_version_number)
        p.add_argument("--reason", required=True, type=_reason)
    approve.add_argument("--force", action="store_true", help="promote even if the gate fails (recorded as forced)")
    rollback = _command(sub, "rollback", "put the previous champion back", cmd_rollback)
    rollback.add_argument("model", type=_model_name)
    rollback.add_argument("--reason", required=True, type=_reason)
    ledger = _command(sub, "ledger", "the promotion ledger of a model", cmd_ledger)
    ledger.add_argument("model", type=_model_name)
    ledger.add_argument("--json", action="store_true")
    ledger.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain, the head anchor, the aliases and the signatures; exit 1 on any problem",
    )
    ledger.add_argument(
        "--acknowledge",
        action="store_true",
        help="record (signed) that you have seen the problems --verify reports and accept them; needs --reason",
    )
    ledger.add_argument("--reason", type=_reason)
    cosign = _command(sub, "cosign", "co-sign another approver's forced approval of a version", cmd_cosign)
    cosign.add_argument("model", type=_model_name)
    cosign.add_argument("version", type=_version_number)
    cosign.add_argument("--reason", required=True, type=_reason)
    keys = _command(sub, "keys", "make a signing key for the ledger (see the approvers file)", cmd_keys)
    keys.add_argument("action", choices=("new",))
    keys.add_argument("name", help="your name in the approvers file")
    keys.add_argument(
        "--out", help="where to write the private key (default: $THAW_SIGNING_KEY or ~/.config/thaw/signing_key)"
    )
    unlock = _command(sub, "unlock", "break a model's promotion lock now (a hung holder), recorded", cmd_unlock)
    unlock.add_argument("model", type=_model_name)
    unlock.add_argument("--reason", required=True, type=_reason)
    restore = _command(sub, "restore-data", "restore a version's exact train/validation/test files", cmd_restore)
    restore.add_argument("model", type=_model_ref, help=MODEL_REF)
    restore.add_argument("--to", required=True)
    restore.add_argument(
        "--replace", action="store_true", help="overwrite files of the splits' names that hold other bytes"
    )
    predict = _command(sub, "predict", "batch prediction with a registered model", cmd_predict)
    predict.add_argument("model", type=_model_ref, help=MODEL_REF)
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--text-column")
    predict.add_argument("--id-column")
    serve = _command(
        sub, "serve", "serve @champion over HTTP; with a waiting @challenger: --shadow or --canary SHARE", cmd_serve
    )
    serve.add_argument(
        "model", type=_model_ref, help="NAME (its champion, and its challenger with --shadow/--canary) or " + MODEL_REF
    )
    routing = serve.add_mutually_exclusive_group()
    routing.add_argument(
        "--shadow", action="store_true", help="mirror every request to the challenger; it never answers"
    )
    routing.add_argument(
        "--canary",
        nargs="?",
        const="config",
        metavar="SHARE",
        help="the challenger answers this share of requests, e.g. 10%% (default: serving.canary.share)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=5001)
    feedback = _command(sub, "feedback", "record true labels of served requests, by request id", cmd_feedback)
    feedback.add_argument("input", help="CSV, TSV, JSONL or Parquet with request_id and label columns")
    feedback.add_argument("--id-column", default="request_id")
    feedback.add_argument("--label-column", default="label")
    canary = _command(sub, "canary", "what live traffic says about the challenger beside the champion", cmd_canary)
    canary.add_argument("model", type=_model_name, help="NAME: its current champion and challenger")
    canary.add_argument("--champion", help="another pair: this champion version")
    canary.add_argument("--challenger", help="another pair: this challenger version")
    canary.add_argument("--json", action="store_true")


# commands that only read or act on models already registered: none of them makes a store
READ_THE_REGISTRY = (
    "models", "lineage", "approve", "reject", "rollback", "ledger", "cosign", "unlock", "restore-data", "predict",
    "serve", "canary", "monitor",
)  # fmt: skip


def _reading_the_registry(sub, names: tuple[str, ...]) -> None:
    """Mark the commands that read registered models (``common._require_embedded_store``)."""
    for name in names:
        sub.choices[name].set_defaults(reads_registry=True)


def _gigabytes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a size in GB (a number, 0 or more)")
    return number


def _seconds(value: str) -> float:
    """argparse type: a duration in seconds, 0 or more and finite (nan would compare as no wait at all)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value[:80]!r} is not a number of seconds (0 or more)")
    return number


def _port(value: str) -> int:
    """argparse type: a TCP port a server can listen on."""
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
        raise argparse.ArgumentTypeError(f"{value[:80]!r} is not a port (1 to 65535)")
    return int(value)


def _operations_commands(sub) -> None:
    schedule = _command(sub, "schedule", "run the pipeline on a schedule as a Prefect deployment", cmd_schedule)
    schedule.add_argument("--cron", help="cron schedule, e.g. '0 3 * * *'")
    schedule.add_argument("--interval", type=int, help="or an interval in seconds")
    schedule.add_argument("--train")
    schedule.add_argument("--model-name")
    schedule.add_argument("--name", help="deployment name (default: MODEL-scheduled)")
    schedule.add_argument("--timezone", help="IANA timezone of --cron (default: this machine's, else UTC)")
    schedule.add_argument(
        "--stop-grace",
        type=_seconds,
        default=20.0,
        help="on SIGTERM/SIGINT, seconds a run in flight may take to finish before it is cancelled (default 20)",
    )
    monitor = _command(
        sub, "monitor", "drift of newly arrived rows against what a model version learned from", cmd_monitor
    )
    monitor.add_argument("model", type=_model_ref, help="MODEL@ALIAS or MODEL/VERSION, e.g. tickets@champion")
    monitor.add_argument("--input", required=True, help="the newly arrived rows (CSV or Parquet)")
    monitor.add_argument("--text-column")
    monitor.add_argument("--label-column", help="default: the config's label column when the file has it")
    monitor.add_argument("--unlabelled", action="store_true", help="ignore any label column")
    monitor.add_argument("--id-column")
    monitor.add_argument(
        "--retrain-deployment", help="on drift, start this training deployment (e.g. thaw-pipeline/tickets-scheduled)"
    )
    monitor.add_argument("--cron", help="run as a deployment on this cron schedule")
    monitor.add_argument("--interval", type=int, help="or every SECONDS")
    monitor.add_argument("--name", help="monitor deployment name (default: MODEL-monitor)")
    monitor.add_argument("--timezone", help="IANA timezone of --cron (default: this machine's, else UTC)")
    monitor.add_argument("--stop-grace", type=_seconds, default=20.0)
    up = _command(sub, "up", "start the Prefect and MLflow servers on loopback (background)", cmd_up)
    up.add_argument("--mlflow-port", type=_port, default=5000)
    up.add_argument("--prefect-port", type=_port, default=4200)
    _command(sub, "down", "stop what `thaw up` started", cmd_down)
    ui = _command(sub, "ui", "the MLflow UI on this workspace's store, artifacts served (Ctrl-C stops it)", cmd_ui)
    ui.add_argument("--port", type=_port, default=5000)
    state = _command(sub, "state", "the caches, checkpoints and run directories kept in the state directory", cmd_state)
    state.add_argument(
        "--prune", action="store_true", help="remove the least recently used until they fit the budget (no run active)"
    )
    state.add_argument("--budget-gb", type=_gigabytes, help="in place of the config's state_budget_gb")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thaw", description="Adapt a pretrained text encoder to your labelled text, traceably."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _pipeline_commands(sub)
    _registry_commands(sub)
    _operations_commands(sub)
    _reading_the_registry(sub, READ_THE_REGISTRY)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``thaw`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        report_user_error(exc)
        if isinstance(exc, ExpectationsFailed) and exc.report:  # the failures above; this file has them all
            say(f"every data check, passed and failed: {exc.report}")
        return 2
    except KeyboardInterrupt:
        say("thaw: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        problem = tracking_access_problem(exc)
        if problem is None:
            raise
        say(f"thaw: error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
