"""CLI commands on the registry: models, lineage, approve, reject, rollback, ledger, restore-data, predict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thaw.errors import UserError
from thaw.shown import named_rows
from thaw_cli.common import config_from_args, say, say_json


def cmd_models(args: argparse.Namespace) -> int:
    """Every version with its aliases, and its rung, test accuracy and approval state as
    the run and the ledger recorded them (not as the version's tags say)."""
    from tasks.release.ledger import report_of
    from tasks.tracking.client import client_for
    from tasks.tracking.dataset_inputs import edited_tags
    from tasks.tracking.identity import team_approvers
    from tasks.tracking.run_record import recorded_summaries, recorded_values
    from thaw.config import MODEL_NAME
    from thaw.shown import quoted_tag

    cfg = config_from_args(args)
    client, approvers = client_for(cfg), team_approvers(cfg)
    rows, unverified, edited, runless = [], {}, [], []
    models = client.search_registered_models()
    # a name is registry input: one thaw would not give (a quote, say) is not put into a filter
    foreign = [rm.name for rm in models if not MODEL_NAME.fullmatch(rm.name)]
    registered = [(rm, client.search_model_versions(f"name='{rm.name}'")) for rm in models if rm.name not in foreign]
    by_run = recorded_summaries(client, (mv.run_id for _, versions in registered for mv in versions))
    for rm, versions in registered:
        ledger = report_of(rm, versions, approvers)  # a search's models carry their tags and aliases
        if ledger.problems:
            unverified[rm.name] = len(ledger.problems)
        for mv in versions:
            decided = ledger.decision(mv.version)  # the approval state the ledger records, not the tag's
            run = by_run.get(mv.run_id, {})
            if not run:  # deleted for good, another store's, or not a run id: the tags are all there is
                runless.append(f"{rm.name} v{mv.version}: run {quoted_tag(mv.run_id)} is not in this tracking store")
            shown = {tag: run.get(tag) or mv.tags.get(tag, "") for tag in ("thaw.rung", "thaw.test_accuracy")}
            changed = edited_tags(recorded_values(run), mv.tags, "its run")
            edited += [f"{rm.name} v{mv.version}: {line}" for line in changed]
            rows.append(
                {
                    "name": rm.name,
                    "version": mv.version,
                    "aliases": sorted(a for a, v in (rm.aliases or {}).items() if str(v) == str(mv.version)),
                    "rung": shown["thaw.rung"],
                    "approval": decided.state if decided else "",
                    "test_accuracy": shown["thaw.test_accuracy"],
                    "run_id": mv.run_id,
                }
            )
    rows.sort(key=lambda r: (r["name"], int(r["version"])))
    if args.json:
        say_json(rows)
    elif not rows:
        say("no registered models yet (run `thaw demo` or `thaw run`)")
    else:
        for r in rows:
            say(
                f"{r['name']:<28} v{r['version']:<4} {','.join(r['aliases']) or '-':<20} {r['rung']:<8} "
                f"acc={r['test_accuracy'] or '-':<7} {r['approval'] or '-'}"
            )
    for line in edited:
        say(f"WARNING: {line} (thaw lineage shows the run's record)", file=sys.stderr)
    for line in runless:
        say(f"WARNING: {line}: its rung and accuracy are shown as its tags say", file=sys.stderr)
    for name in foreign:
        say(f"WARNING: registered model {quoted_tag(name)} is not a name thaw gives: not listed", file=sys.stderr)
    for name, count in unverified.items():
        say(
            f"WARNING: the ledger of {name} does not verify ({_problems(count)}): thaw ledger {name} --verify",
            file=sys.stderr,
        )
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from tasks.release.lineage import describe_lineage

    cfg = config_from_args(args)
    info = describe_lineage(cfg, args.model)
    if args.json:
        say_json(info)
        return 0
    m, d = info["model"], info["data"]
    say(
        f"{m['name']} version {m['version']} "
        f"(aliases: {', '.join(m['aliases']) or '-'}, approval: {m['approval'] or '-'})"
    )
    for problem in info["ledger_problems"]:
        say(f"WARNING: the promotion ledger does not verify: {problem}", file=sys.stderr)
    for problem in info["tag_problems"]:
        say(f"WARNING: the data shown is not what the run logged: {problem}", file=sys.stderr)
    for problem in info["record_problems"]:
        say(f"WARNING: the registry's summary is not what the run logged: {problem}", file=sys.stderr)
    say(f"  run            {info['run']['id']} ({info['run']['status']}) in {info['run']['tracking_uri']}")
    say(f"  prefect run    {info['prefect_flow_run_id']}")
    say(f"  raw data       {d['raw']['dvc_file']} md5 {d['raw']['md5']}")
    for split, f in d["curated"].items():
        say(f"  {split:<14} {f['path']} md5 {f['md5']}")
    say(f"  DVC remote     {d['dvc_remote']}")
    say(f"  git commit     {info['git_commit']} (the workspace's)")
    say(f"  thaw           version {info['code']['thaw_version'] or '-'}, commit {info['code']['commit'] or '-'}")
    say(f"  config digest  {info['config_digest']}")
    say(
        f"  backbone       {info['backbone']['name']} ({info['backbone']['source']}) "
        f"rev {str(info['backbone']['revision'])[:16]}"
    )
    say(
        f"  rung           {info['rung']} ({info['transfer'].get('method') or '-'}): "
        f"{info['transfer'].get('reason', '-')}"
    )
    say(f"  test           accuracy {info['test']['accuracy'] or '-'}, macro-F1 {info['test']['macro_f1'] or '-'}")
    approval = info["approval"]
    if approval.get("by"):
        say(
            f"  approval       {approval['state']} by {approval['by']} at {approval.get('at')}: "
            f"{approval.get('reason')}"
        )
    for uri in info["reports"].values():
        say(f"  report         {uri}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from tasks.release.promotion import approve, live_evidence
    from tasks.tracking.client import CHAMPION, alias_version, client_for

    cfg = config_from_args(args)
    champion = alias_version(client_for(cfg), args.model, CHAMPION)
    live = live_evidence(cfg, args.model, champion, args.version)
    if live is not None:  # what the approver sees is what the ledger keeps
        say("live evidence (thaw canary):")
        for line in live.lines():
            say(line)
    decision = approve(
        cfg, args.model, args.version, args.reason, force=args.force, shown_live=live.as_dict() if live else None
    )
    state = "FORCED to champion" if decision.forced else "champion"
    say(f"{args.model} v{args.version} is now {state}:")
    for reason in decision.reasons:
        say(f"  - {reason}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from tasks.release.promotion import reject

    reject(config_from_args(args), args.model, args.version, args.reason)
    say(f"{args.model} v{args.version} rejected")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from tasks.release.promotion import rollback

    target = rollback(config_from_args(args), args.model, args.reason)
    say(f"{args.model}: champion is back to v{target}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for, is_missing
    from tasks.tracking.identity import team_approvers

    cfg = config_from_args(args)
    accepted: list[str] = []
    if args.acknowledge:
        from tasks.release.promotion import acknowledge

        if not args.reason:
            raise UserError("--acknowledge needs --reason: what was found, and why it may stand")
        accepted = list(acknowledge(cfg, args.model, args.reason))
        if not args.json:  # with --json they are a field of the document
            for problem in accepted:
                say(f"acknowledged: {problem}")
            say(
                f"{args.model}: {_problems(len(accepted))} acknowledged"
                if accepted
                else f"{args.model}: nothing to acknowledge"
            )
    try:
        report = ledger_report(client_for(cfg), args.model, team_approvers(cfg))
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise UserError(f"no registered model {args.model!r}") from None
    interrupted = _interrupted(cfg, args.model, report)
    verdict = "does not verify" if report.problems else "verifies"
    summary = (
        f"{args.model}: the ledger {verdict} ({len(report.entries)} entries, champion "
        f"{'v' + report.champion if report.champion else 'none'} by replay)"
    )
    if args.json:  # one document on stdout, whatever else there is to say: a script reads it
        say_json(
            {
                "entries": report.entries,
                "problems": report.problems,
                "notes": report.notes,
                "interrupted": interrupted,
                "verifies": report.ok,
                "champion": report.champion,
                **({"acknowledged": accepted} if args.acknowledge else {}),
            }
        )
        return 1 if args.verify and report.problems else 0
    for e in report.entries:
        say(_ledger_line(e, report.signed))
    for line in interrupted:
        say(f"INTERRUPTED: {line}")
    for note in report.notes:
        say(f"note: {note}")
    if args.verify:
        for problem in report.problems:
            say(f"PROBLEM: {problem}", file=sys.stderr)
        say(summary)
        return 1 if report.problems else 0
    if report.problems:  # the history shown is not the whole story: said, as `thaw models` says it
        say(
            f"WARNING: the ledger does not verify ({_problems(len(report.problems))}): "
            f"thaw ledger {args.model} --verify",
            file=sys.stderr,
        )
    return 0


def _problems(count: int) -> str:
    return f"{count} problem{'s' * (count != 1)}"


def _interrupted(cfg, model: str, report) -> list[str]:
    """One line for each operation of the ledger that has an intent and no completion."""
    if not report.open_operations:
        return []
    from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version, client_for

    client = client_for(cfg)
    state = ", ".join(
        f"{alias} {'v' + v if (v := alias_version(client, model, alias)) else 'unset'}"
        for alias in (CHAMPION, CHALLENGER)
    )
    return [
        f"{op.action} v{op.intent.get('version')} by {op.intent.get('by')} at {op.intent.get('at')} "
        f"has no completion (now {state}); the next operation on this model completes it"
        for op in report.open_operations
    ]


def _ledger_line(e: dict, signed: bool) -> str:
    from thaw.ledger import who_cell

    who = who_cell(e, signed)
    what = f"{e.get('action')} v{e.get('version')}" if e.get("version") else str(e.get("action"))
    if e.get("phase") == "completion":
        extra = " (recovered)" if e.get("recovered") else ""
        line = f"  -> {e.get('outcome')}{extra}"
        return f"{e.get('at', '')[:19]} {what:<16} {line} [{e['op']}]"
    forced = " FORCED" if e.get("force") else ""
    before = f" (champion was v{e['champion_before']})" if e.get("champion_before") else ""
    broke = f" (broke the lock of {e['broken']})" if e.get("broken") else ""  # thaw unlock's record
    return f"{e.get('at', '')[:19]} {what:<16}{forced}{before} by {who}: {e.get('reason', '')}{broke} [{e['op']}]"


def cmd_cosign(args: argparse.Namespace) -> int:
    from tasks.release.promotion import cosign

    cosign(config_from_args(args), args.model, args.version, args.reason)
    say(f"{args.model} v{args.version}: co-signed; another approver may now approve it with --force")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """`thaw keys new NAME`: a signing key pair, and the lines for the approvers file."""
    from thaw.signing import key_path, new_key, public_key_line

    path = Path(args.out).expanduser() if args.out else key_path()
    public = new_key(path)
    say(f"private key written to {path} (mode 600; keep it there, never in the repository)")
    say(f"add to the approvers file ({config_from_args(args).promotion.approvers_file}), in a reviewed commit:")
    say()
    say(f"  {args.name}:")
    say(f"    key: {public_key_line(public, args.name)}")
    say("    may: [approve, reject]")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from tasks.release.promotion import unlock

    broken = unlock(config_from_args(args), args.model, args.reason)
    say(f"{args.model}: promotion lock broken ({broken}); recorded in the ledger")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from tasks.release.ledger import resolve_backed_version
    from tasks.versioning.restore import restore_data

    cfg = config_from_args(args)
    mv = resolve_backed_version(cfg, args.model, "thaw restore-data")  # @champion: where the ledger puts it
    restored = restore_data(cfg, f"{mv.name}/{mv.version}", Path(args.to), replace=args.replace)
    for split, path in restored.items():
        say(f"{split:<11} {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tasks.serving.batch_prediction import predict_file

    cfg = config_from_args(args)
    predicted = predict_file(
        cfg,
        args.model,
        Path(args.input),
        Path(args.output),
        args.text_column or cfg.data.text_column,
        args.id_column if args.id_column is not None else cfg.data.id_column,
    )
    say(f"wrote {predicted.rows} predictions to {args.output}")
    if empty := predicted.empty_text_rows:
        say(
            f"note: {len(empty)} rows have no text (rows {named_rows(empty)}): "
            "each got the model's answer to an empty text"
        )
    return 0
