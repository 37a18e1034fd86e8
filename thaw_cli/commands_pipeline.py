"""CLI commands that run flows: run, demo, curate."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from thaw.errors import UserError
from thaw_cli.common import DEMO_CONFIG, config_from_args, quiet_user_error_tracebacks, say, thaw_command


def _run_pipeline(cfg, summary_json: str | None) -> dict:
    from thaw.ingest import preflight_inputs

    d = cfg.data
    preflight_inputs(
        {"train": d.train, "validation": d.validation, "test": d.test},
        d.columns,
    )
    if summary_json:
        _check_summary_target(Path(summary_json), [d.train, d.validation, d.test])
    from flows.pipeline import thaw_pipeline
    from tasks.versioning.snapshots import check_tracked_files

    check_tracked_files(cfg)  # before a tracking run is opened for a run DVC would refuse (the flow checks again)
    quiet_user_error_tracebacks()

    summary_path = thaw_pipeline(cfg)
    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    if summary_json:
        from thaw.datasets import write_text_atomically

        write_text_atomically(Path(summary_json), json.dumps(summary, indent=2, sort_keys=True))
    return summary


def _check_summary_target(target: Path, inputs: list[str | None]) -> None:
    """Refuse, before the run, a --summary-json it could not write after it, or that is one
    of its inputs (the summary would replace the rows it is about)."""
    if target.is_dir():
        raise UserError(f"--summary-json {target}: is a directory; give a file name")
    for given in filter(None, inputs):
        if target.exists() and Path(given).exists() and os.path.samefile(target, given):
            raise UserError(f"--summary-json {target}: is the input file {given}, which the summary would replace")


def _data_overrides(args: argparse.Namespace, train: str | None) -> dict[str, str | None]:
    """Config overrides from the data flags of ``run`` and ``curate``."""
    return {
        "data.train": train,
        "data.validation": args.validation,
        "data.test": args.test,
        "data.text_column": args.text_column,
        "data.label_column": args.label_column,
        "data.id_column": args.id_column,
    }


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, {**_data_overrides(args, args.train), "model_name": args.model_name})
    if cfg.data.train is None:
        raise UserError("no training data: pass --train FILE or set data.train in the config")
    started = time.perf_counter()
    summary = _run_pipeline(cfg, args.summary_json)
    again = functools.partial(thaw_command, config=args.config, workspace=args.workspace)
    _print_outcome(cfg, summary, time.perf_counter() - started, again)
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from thaw.ingest import preflight_inputs

    cfg = config_from_args(args, {**_data_overrides(args, args.input), "data.output_format": args.format})
    d = cfg.data
    preflight_inputs(
        {"input": d.train, "validation": d.validation, "test": d.test},
        d.columns,
    )
    output = Path(args.output)
    for role, path in (("input", d.train), ("validation", d.validation), ("test", d.test)):
        if path is not None and Path(path).resolve().parent == output.resolve():
            raise UserError(
                f"--output {output}: holds the {role} file {path}, which the curated splits could overwrite; "
                "write them to another directory"
            )
    from thaw import artifacts
    from thaw.datasets import SPLITS

    # the files this curation writes replace what is there: only what an earlier one wrote,
    # never the user's own train.csv (its report beside them says a curation wrote them)
    replaced = [output / f"{split}.{d.output_format}" for split in SPLITS]
    replaced += [output / artifacts.CURATION_REPORT, output / artifacts.CURATION_METRICS]
    theirs = [path.name for path in replaced if path.exists()]
    if theirs and not _curation_report(output / artifacts.CURATION_REPORT):
        raise UserError(
            f"--output {output}: holds {', '.join(theirs)}, which no earlier thaw curate wrote (no curation report "
            "beside them) and which this one would replace; move them or write to another directory"
        )
    docs = output / artifacts.DATA_DOCS  # replaced by this run's: only Data Docs an earlier curation wrote
    if docs.exists() and not (docs / "index.html").is_file():
        raise UserError(
            f"--output {output}: holds {docs.name}/, which is not Data Docs an earlier thaw curate wrote and "
            "would be replaced; move it or write to another directory"
        )
    from flows.curation import curation_flow

    quiet_user_error_tracebacks()
    written, reused = curation_flow(cfg, output)
    report = json.loads(Path(written["report"]).read_text(encoding="utf-8"))
    say(f"curated into {args.output}: " + ", ".join(f"{s} {n} rows" for s, n in report["splits"].items()))
    for stage in report["stages"]:
        if stage["removed"]:
            say(f"  {stage['stage']:<32} removed " + ", ".join(f"{k}={v}" for k, v in stage["removed"].items()))
    pii = report["pii"]
    # a report reused from a curation cached before thaw counted processes does not say
    processes = f" in {pii['processes']} process{'es' * (pii['processes'] != 1)}" if "processes" in pii else ""
    speed = f"{pii['rows_per_s']:.0f} rows/s{processes}"
    # a reused curation scrubbed nothing now: its speed is the one of the run that made it
    if reused:
        speed = f"(reused: the same inputs, settings and PII key were curated before, at {speed})"
    else:
        speed = f"at {speed}"
    say(f"  PII: {pii['rows_changed']} rows changed {speed}; report {written['report']}")
    return 0


def _curation_report(path: Path) -> bool:
    """Whether ``path`` is a curation report as ``thaw curate`` writes it."""
    from thaw.parse import json_value

    try:
        report = json_value(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"splits", "stages", "pii"} <= report.keys()


def cmd_demo(args: argparse.Namespace) -> int:
    from tasks.versioning.snapshots import check_tracked_files
    from thaw.demo_data import write_demo_data

    # the commands after the demo read configs/default.yaml, whose store is the demo's:
    # only a config the user chose is carried into them
    again = functools.partial(thaw_command, config=args.config, workspace=args.workspace)
    args.config = args.config or str(DEMO_CONFIG)
    cfg = config_from_args(args)
    started = time.perf_counter()
    write_demo_data(cfg.root)
    check_tracked_files(cfg)  # data.dvc is read next
    _check_demo_matches_data_dvc(cfg.root)
    summary = _run_pipeline(cfg, args.summary_json)
    _print_outcome(cfg, summary, time.perf_counter() - started, again)
    return 0


def _check_demo_matches_data_dvc(root: Path) -> None:
    """Say whether the regenerated demo data is byte-identical to what data.dvc pins: the
    demo CSV as the run will import it (``data/imports/<md5>/``, its only file)."""
    import yaml

    from tasks.versioning.snapshots import demo_tree_md5
    from thaw.demo_data import DEMO_RELPATH

    pinned = root / "data.dvc"
    if not pinned.is_file():
        return
    recorded = yaml.safe_load(pinned.read_text(encoding="utf-8"))["outs"][0]["md5"]
    actual = demo_tree_md5(root / DEMO_RELPATH)
    if actual == recorded:
        say(f"demo data regenerated: matches data.dvc ({recorded})")
    else:
        say(
            f"warning: data/ ({actual}) differs from what data.dvc pins ({recorded}); "
            "the run versions what is there now",
            file=sys.stderr,
        )


def _scrub_speed(summary: dict) -> str:
    speed = f"{summary['curation']['pii']['rows_per_s']:.0f} rows/s"
    if summary.get("caches", {}).get("curation_hit"):
        return f"(reused from the curation cache, scrubbed at {speed} when made)"
    return f"(PII scrubbed at {speed})"


def _print_outcome(cfg, summary: dict, seconds: float, again: Callable[..., str]) -> None:
    """The run's outcome, then the commands to look at it, each ready to paste (``again``
    writes a thaw command line: ``common.thaw_command`` with the user's options)."""
    from thaw.tracking import tracking_uri

    if summary.get("skipped"):
        say()
        say(f"thaw skipped training: {summary['skipped']} (scheduling.on_concurrent_run=skip)")
        return

    model, test = summary["model"], summary["test"]["metrics"]
    outcome = (summary.get("approval") or {}).get("outcome")
    alias = {"approved": "champion", "rejected": None}.get(outcome or "", model["alias"])
    ref = f"{model['name']}@{alias}" if alias else f"{model['name']}/{model['version']}"
    took = f" in {seconds / 60:.1f} min"
    splits = summary["curation"]["splits"]
    say()
    say(f"thaw finished{took}.")
    now = f"now '{alias}'" if alias else "then rejected"
    say(
        f"  registered   {model['name']} version {model['version']} as '{model['alias']}', {now} "
        f"(rung: {summary['selected_rung']})"
        if outcome in ("approved", "rejected")
        else f"  registered   {model['name']} version {model['version']} as '{model['alias']}' "
        f"(rung: {summary['selected_rung']})"
    )
    say(
        f"  test         accuracy {test['accuracy']:.3f} [{test['accuracy_low']:.3f}, {test['accuracy_high']:.3f}], "
        f"macro-F1 {test['macro_f1']:.3f} on {int(test['examples'])} rows"
    )
    say(
        f"  curated      train {splits['train']}, validation {splits['validation']}, test {splits['test']} rows "
        + _scrub_speed(summary)
    )
    registered = summary.get("registered_model") or {}
    served = registered.get("served") or registered.get("serving")
    if served:
        engine = served.get("engine") or f"pytorch, {served['precision']}"
        say(
            f"  serving      p95 {served['p95_ms']:.1f} ms at batch 1, {served['rows_per_s']:.0f} rows/s at batch "
            f"{served['batch']} ({engine}; transfer_note.md has every rung)"
        )
    approval = summary.get("approval")
    if approval:
        say(f"  approval     {approval['outcome'].upper()}: {approval['message']}")  # the approver's words
    say(f"  summary      {cfg.state_path / 'runs' / summary['mlflow']['run_id'] / 'summary.json'}")
    say()
    say("Look at it:")
    uri = tracking_uri(cfg)
    served = uri.startswith(("http://", "https://"))
    say(f"  MLflow UI    {uri}" if served else f"  MLflow UI    {again('ui')}")
    say(f"  lineage      {again('lineage', ref)}")
    say(f"  models       {again('models')}")
    if approval is None or approval["outcome"] in ("timeout", "requested"):
        reason = "reviewed transfer note and test report"
        say(f"  approve      {again('approve', model['name'], str(model['version']), '--reason', reason)}")
    predict = again("predict", f"{model['name']}@champion", "--input", "FILE.csv", "--output", "predictions.csv")
    say(f"  predict      {predict}")
