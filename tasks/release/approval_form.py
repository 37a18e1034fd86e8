"""Human approval inside a Prefect run: pause for a typed form in the Prefect UI.

Before it pauses, the run says what it waits for and until when (a log line and a
markdown artifact with the candidate, the gate's verdict as it stands and links to the
MLflow run, model card and transfer note). The form has no defaults: the approver picks
approve or reject and gives a reason. It cannot force: nobody who answers it is
authenticated, so a forced promotion is only ``thaw approve --force`` (with a second
approver's co-signature where entries are signed). After the answer the decision is logged,
written as a markdown artifact, and becomes the run's final state (``Approved``,
``Rejected``, ``ApprovalRequested``, ``ApprovalTimedOut``; a refusal by the gate fails
the run with the gate's reasons).

Who answered the form is not known: the Prefect UI has no per-user login, and the flow
acts with the worker's MLflow credentials. So where the tracking server authenticates
users or the team signs its entries (an approvers file), the answer is recorded in the
ledger as a *request* (with the name typed, marked
as claimed) and an approver completes it with ``thaw approve`` / ``thaw reject`` under
their own authenticated account; the gate and the promotion happen then. Where the
server has no authentication, no identity is verified anyway: the answer goes through the
same ``approve``/``reject`` as the CLI in the typed name, marked as not verified (never
the name of the process's OS user). Without an answer before the timeout the version
stays challenger.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from prefect.input import RunInput
from pydantic import Field, StringConstraints

from tasks.tracking.client import CHAMPION, RegisteredVersion, alias_version, client_for
from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.shown import md_code, md_text
from thaw.signing import NAME
from thaw.tracking import tracking_uri

log = logging.getLogger(__name__)


class ApprovalForm(RunInput):
    """What the approver fills in: every field required, nothing chosen for them."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: promote if the gate passes. reject: never promote this version. "
        "(Promoting despite the gate is `thaw approve --force`, never this form.)"
    )
    reason: str = Field(min_length=3, max_length=2000, description="Why; kept in the ledger with your name.")
    # as the approvers file and THAW_APPROVER spell names: it is written into the ledger. The
    # server checks the pattern when the run resumes (Python's "$" lets one trailing newline
    # through, which a textarea's Enter adds); the flow strips it before checking again
    approver: Annotated[str, StringConstraints(strip_whitespace=True, pattern=NAME.pattern)] = Field(
        description="Your name, as it should appear in the ledger: letters, digits and . _ @ - (at most 64).",
    )


@dataclass(frozen=True)
class ApprovalOutcome:
    """How the wait for approval ended: the outcome, in words, and the final state's name."""

    outcome: Literal["approved", "rejected", "requested", "refused", "timeout"]
    message: str

    @property
    def state_name(self) -> str:
        return {
            "approved": "Approved",
            "rejected": "Rejected",
            "requested": "ApprovalRequested",
            "refused": "Refused",
            "timeout": "ApprovalTimedOut",
        }[self.outcome]


def mlflow_ui_url(cfg: ThawConfig) -> str | None:
    """The MLflow UI's address when the registry is a tracking server (it serves the UI)."""
    uri = tracking_uri(cfg)
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def review_links(cfg: ThawConfig, registered: RegisteredVersion) -> list[str]:
    """Markdown links to what the approver should read, absolute (the Prefect UI is elsewhere)."""
    from tasks.tracking.links import mlflow_run_link, mlflow_version_link

    ui = mlflow_ui_url(cfg)
    if ui is None:
        return [
            f"- MLflow run {md_code(registered.run_id, 80)}: open it with `thaw ui` (the registry is a local store, "
            "so there is no UI address to link)"
        ]
    experiment = client_for(cfg).get_run(registered.run_id).info.experiment_id
    run = f"{ui}/{mlflow_run_link(experiment, registered.run_id)}"
    return [
        f"- [model card]({ui}/{mlflow_version_link(registered.name, registered.version)}) (the version's page)",
        f"- [MLflow run]({run}); [transfer note]({run}/artifacts/transfer_note.md); "
        f"[test report]({run}/artifacts/test_report.json)",
    ]


def serving_line(cost: dict) -> str:
    """The registered model's serving cost in one line (from its version tags)."""
    if "p95_ms" not in cost:
        return "- serving cost: not measured (registered before thaw measured it)"
    return (
        f"- serving cost (measured in the run, {cost.get('engine', 'pytorch')} on "
        f"{cost.get('device', 'a device not recorded')}): batch 1 p50 "
        f"{cost.get('p50_ms', float('nan')):g} / p95 {cost['p95_ms']:g} / p99 {cost.get('p99_ms', float('nan')):g} ms; "
        f"{cost.get('rows_per_s', float('nan')):g} rows/s at batch {cost.get('batch', float('nan')):g}; "
        f"{cost.get('rss_mb', float('nan')):g} MB memory added, {cost.get('model_mb', float('nan')):g} MB own files"
    )


def live_section(cfg: ThawConfig, registered: RegisteredVersion) -> tuple[str, dict | None]:
    """The form's "Live evidence" section as it stands now, and the figures it shows (the
    ledger keeps what the approver saw). Read from the serving store (``thaw canary``)."""
    from tasks.release.promotion import live_evidence

    champion = alias_version(client_for(cfg), registered.name, CHAMPION)
    now = datetime.now(UTC)
    head = f"**Live evidence** (the serving store, read at {now:%Y-%m-%d %H:%M:%S} UTC"
    if champion is None or champion == registered.version:
        return f"{head})\n\n- none: there is no champion for it to run beside", None
    try:
        report = live_evidence(cfg, registered.name, champion, registered.version)
    except UserError as exc:
        return f"{head})\n\n- **the store cannot be read**: {exc}", None
    refresh = (
        f"; checked every {cfg.promotion.evidence_refresh_seconds:g} s while this run waits, "
        "rewritten when the figures change)"
    )
    if report is None:
        return (
            f"{head}{refresh}\n\n- no live requests yet: `thaw serve {registered.name} --shadow` (or `--canary 10%`) "
            f"puts v{registered.version} beside champion v{champion} on live traffic",
            None,
        )
    lines = "\n".join(f"- {md_text(line.strip(), 500)}" for line in report.lines()[1:])
    return head + refresh + "\n\n" + lines, report.as_dict()


class EvidenceRefresher:
    """Rewrites the paused form's description with the live evidence as it stands, while
    the run waits (the Prefect UI reads the description when the approver presses
    Resume). It checks every ``promotion.evidence_refresh_seconds`` and rewrites only when
    the figures changed: Prefect has no update for a run input, so a rewrite deletes the
    description and creates it again, and a form opened in between shows none.
    ``shown`` is what it last showed."""

    def __init__(
        self, cfg: ThawConfig, registered: RegisteredVersion, static: str, pause_key: str, section: str, shown
    ) -> None:
        import threading

        self.cfg, self.registered, self.static, self.section, self.shown = cfg, registered, static, section, shown
        self.key = f"paused-{pause_key}-description"  # prefect.input.keyset_from_paused_state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="thaw-evidence-refresh", daemon=True)

    def start(self) -> EvidenceRefresher:
        from prefect.runtime import flow_run

        self._flow_run_id = flow_run.get_id()
        if self._flow_run_id is not None:
            self._thread.start()
        return self

    def _loop(self) -> None:
        from prefect import get_client

        while not self._stop.wait(self.cfg.promotion.evidence_refresh_seconds):
            try:
                section, shown = live_section(self.cfg, self.registered)
                if _figures(section) == _figures(self.section):
                    continue
                with get_client(sync_client=True) as client:
                    client.delete_flow_run_input(flow_run_id=self._flow_run_id, key=self.key)
                    client.create_flow_run_input(
                        flow_run_id=self._flow_run_id, key=self.key, value=json.dumps(self.static + "\n\n" + section)
                    )
                self.shown, self.section = shown, section
            except Exception as exc:  # the form keeps what it showed last; the next round tries again
                log.warning("could not refresh the approval form's live evidence: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def _figures(section: str) -> str:
    """A live section without its first line (the time it was read): what it shows."""
    return section.split("\n", 1)[-1]


def approval_description(cfg: ThawConfig, registered: RegisteredVersion, deadline: datetime) -> str:
    """Markdown shown above the form: the deadline, the gate's verdict as it stands,
    metrics, the comparison with the champion, links and lineage.

    Every value read back from the registry (tags, the gate's reasons that quote them,
    ledger problems) goes in as text (``md_text``) or inline code (``md_code``): whoever
    may edit a tag cannot add a line, a heading, a link or an image to what the approver
    reads. The rung and test scores are the run's record, not the version's tags."""
    from tasks.release.lineage import describe_lineage
    from tasks.release.promotion import preview_gate

    info = describe_lineage(cfg, f"{registered.name}/{registered.version}")
    verdict = preview_gate(cfg, registered.name, registered.version)
    model = f"{md_text(registered.name, 100)} v{md_text(registered.version, 20)}"
    transfer = info["transfer"]
    lines = [
        f"## Approve {model} as champion?",
        "",
        f"This run waits for your answer until **{deadline:%Y-%m-%d %H:%M} UTC**; without one the version "
        "stays challenger. Choose approve or reject and give a reason: nothing is chosen for you.",
        "",
        f"**The gate would {'PROMOTE' if verdict.promote else 'REFUSE'} it now**: "
        + md_text("; ".join(verdict.reasons), 3000),
    ]
    if not verdict.promote:
        lines.append("(approve would be refused; only `thaw approve --force` can promote it despite the gate)")
    lines += [
        "",
        f"- rung: **{md_text(info['rung'], 40)}** ({md_text(transfer.get('method'), 80)}); "
        + md_text(transfer.get("reason"), 500),
        f"- test accuracy {md_text(info['test']['accuracy'], 20)}, macro-F1 {md_text(info['test']['macro_f1'], 20)}",
        serving_line(info.get("serving") or {}),
        "- champion: " + (f"v{c}" if (c := alias_version(client_for(cfg), registered.name, CHAMPION)) else "none yet"),
        *review_links(cfg, registered),
    ]
    for problems, what in (
        ("ledger_problems", "the ledger does not verify"),
        ("tag_problems", "the data shown is not what the run logged"),
        ("record_problems", "the registry's summary is not what the run logged"),
    ):
        if info.get(problems):
            lines.append(f"- **WARNING: {what}**: " + md_text("; ".join(info[problems][:3]), 1000))
    d = info["data"]
    lines += [
        "",
        "**Lineage**",
        f"- git {md_code(info['git_commit'], 80)}, config {md_code(str(info['config_digest'])[:12])}, "
        f"thaw {md_text(info['code']['thaw_version'], 40)} at {md_code(info['code']['commit'], 80)}",
        *[f"- {s}: {md_code(f['path'])} md5 {md_code(f['md5'], 80)}" for s, f in d["curated"].items()],
        f"- DVC remote {md_code(d['dvc_remote'])}; raw {md_code(d['raw']['dvc_file'])} "
        f"md5 {md_code(d['raw']['md5'], 80)}",
    ]
    return "\n".join(lines)


def _announce(key: str, markdown: str, description: str) -> None:
    """A markdown artifact on the flow run (nothing to attach to outside one)."""
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(markdown=markdown, key=key, description=description)
    except Exception as exc:  # e.g. called outside a flow run: the log line still says it
        log.debug("no Prefect artifact %s: %s", key, exc)


def _run_logger():
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def wait_for_approval(cfg: ThawConfig, registered: RegisteredVersion) -> ApprovalOutcome:
    """Pause the flow run for the form, act on the answer, and say what happened.

    Call from the flow body (Prefect pauses flow runs, not tasks). A refusal by the gate
    is logged and recorded, then raised (UserError): the run fails with the reasons."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from tasks.release.promotion import approve, reject, request_approval
    from tasks.tracking.identity import Identity, registry_identity, team_approvers

    logger = _run_logger()
    ref = f"{registered.name} v{registered.version}"
    timeout = int(cfg.promotion.approval_timeout_minutes * 60)
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    static = approval_description(cfg, registered, deadline)
    section, shown = live_section(cfg, registered)
    description = static + "\n\n" + section
    key = f"approval-{registered.name}-v{registered.version}".lower().replace("_", "-")
    _announce(key + "-request", description, f"waiting for approval of {ref}")
    logger.warning(
        "WAITING FOR APPROVAL of %s until %s UTC: open this flow run in the Prefect UI, press Resume and answer "
        "the form (or `thaw approve`/`thaw reject`); without an answer it stays challenger",
        ref,
        f"{deadline:%Y-%m-%d %H:%M}",
    )
    form = ApprovalForm.with_initial_data(description=description)
    pause_key = f"approve-{registered.name}-{registered.version}"
    refresher = EvidenceRefresher(cfg, registered, static, pause_key, section, shown).start()
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, key=pause_key)
    except FlowPauseTimeout:
        refresher.stop()
        _end_pause("no approval before the deadline")
        outcome = ApprovalOutcome(
            "timeout",
            f"no answer within {cfg.promotion.approval_timeout_minutes} min: {ref} stays challenger",
        )
    else:
        refresher.stop()
        typed = answer.approver.strip()
        registry = registry_identity(cfg)
        if registry.verified or team_approvers(cfg) is not None:
            request_approval(
                cfg,
                registered.name,
                registered.version,
                answer.decision != "reject",
                answer.reason,
                typed,
                shown_live=refresher.shown,
            )
            outcome = ApprovalOutcome(
                "requested",
                f"{typed} asked to {answer.decision} {ref}; recorded as a request. Approvers are authenticated or "
                f"sign their entries, so an approver completes it with `thaw {answer.decision} {registered.name} "
                f"{registered.version} --reason ...`",
            )
        else:
            who = Identity(typed, False, "not verified: name typed into the Prefect form")
            acting = {"via": f"prefect form (typed name: {typed[:60]})", "who": who, "shown_live": refresher.shown}
            try:
                if answer.decision == "reject":
                    reject(cfg, registered.name, registered.version, answer.reason, **acting)
                    outcome = ApprovalOutcome("rejected", f"{typed} rejected {ref}: {answer.reason}")
                else:
                    decision = approve(cfg, registered.name, registered.version, answer.reason, **acting)
                    how = "FORCED, " if decision.forced else ""
                    outcome = ApprovalOutcome(
                        "approved", f"{typed} approved {ref} ({how}{'; '.join(decision.reasons)}): it is champion"
                    )
            except UserError as exc:
                outcome = ApprovalOutcome("refused", f"{typed} asked to {answer.decision} {ref}: {exc}")
    _report(logger, key, ref, outcome)
    if outcome.outcome == "refused":
        raise UserError(outcome.message)
    return outcome


def _end_pause(message: str) -> None:
    """Take the run out of Paused once its pause timed out. Prefect keeps a timed-out
    pause from ending any other way than Failed ("never resumed"); the run is alive and
    finishes on its own terms (``ApprovalTimedOut``), so it says it is running again."""
    from prefect import get_client
    from prefect.runtime import flow_run
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.get_id(), Running(message=message), force=True)


def _report(logger, key: str, ref: str, outcome: ApprovalOutcome) -> None:
    level = {"refused": logging.ERROR, "timeout": logging.WARNING}.get(outcome.outcome, logging.INFO)
    logger.log(level, "approval of %s: %s. %s", ref, outcome.outcome.upper(), outcome.message)
    _announce(
        key + "-decision", f"## Approval of {ref}: {outcome.state_name}\n\n{outcome.message}\n", f"approval of {ref}"
    )


def final_state(outcome: ApprovalOutcome, result):
    """The flow run's final state for ``outcome``: Completed, named for the decision."""
    from prefect.states import Completed

    return Completed(name=outcome.state_name, message=outcome.message, data=result)
