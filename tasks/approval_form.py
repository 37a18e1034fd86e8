"""Human approval inside a Prefect run: pause for a typed form in the Prefect UI.

The form shows the candidate's evaluation against the champion and its lineage.

Who answered the form is not known: the Prefect UI has no per-user login, and the flow
acts with the worker's MLflow credentials. So where the tracking server authenticates
users, the answer is recorded in the ledger as a *request* (with the name typed, marked
as claimed) and an approver completes it with ``thaw approve`` / ``thaw reject`` under
their own authenticated account; the gate and the promotion happen then. Where the
server has no authentication, no identity is verified anyway: the answer goes through the
same ``approve``/``reject`` as the CLI, and every entry says it was not verified.
Without an answer before the timeout the version stays challenger.
"""

from __future__ import annotations

import logging

from prefect.input import RunInput

from tasks.registry import CHAMPION, RegisteredVersion, alias_version, client_for
from thaw.config import ThawConfig

log = logging.getLogger(__name__)


class ApprovalForm(RunInput):
    """What the approver fills in."""

    approve: bool = False
    reason: str = ""
    approver: str = ""


def approval_description(cfg: ThawConfig, registered: RegisteredVersion) -> str:
    """Markdown shown above the form: metrics, comparison with the champion, lineage."""
    from tasks.champion_comparison import compare_with_champion
    from tasks.lineage import describe_lineage

    info = describe_lineage(cfg, f"{registered.name}/{registered.version}")
    lines = [
        f"## Approve {registered.name} v{registered.version} as champion?",
        "",
        f"- rung: **{info['rung']}** ({info['transfer'].get('method')}); {info['transfer'].get('reason')}",
        f"- test accuracy {info['test']['accuracy']}, macro-F1 {info['test']['macro_f1']}",
    ]
    champion = alias_version(client_for(cfg), registered.name, CHAMPION)
    if champion:
        versus = compare_with_champion(cfg, registered.name, champion, registered.version)
        lines.append(f"- vs champion: {versus.summary()}")
    else:
        lines.append("- no champion yet")
    d = info["data"]
    lines += [
        "",
        "**Lineage**",
        f"- MLflow run `{info['run']['id']}`, git `{info['git_commit']}`, config `{str(info['config_digest'])[:12]}`",
        *[f"- {s}: `{f['path']}` md5 `{f['md5']}`" for s, f in d["curated"].items()],
        f"- DVC remote `{d['dvc_remote']}`; raw `{d['raw']['dvc_file']}` md5 `{d['raw']['md5']}`",
    ]
    return "\n".join(lines)


def wait_for_approval(cfg: ThawConfig, registered: RegisteredVersion) -> str:
    """Pause the flow run for the form; returns 'approved', 'rejected', 'requested' (an
    authenticating registry: recorded for an approver to complete) or 'timeout'.

    Call from the flow body (Prefect pauses flow runs, not tasks).
    """
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from tasks.identity import registry_identity
    from tasks.promotion import approve, reject, request_approval

    form = ApprovalForm.with_initial_data(description=approval_description(cfg, registered))
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=int(cfg.promotion.approval_timeout_minutes * 60),
            key=f"approve-{registered.name}-{registered.version}",
        )
    except FlowPauseTimeout:
        log.warning(
            "no approval within %s min: %s v%s stays challenger",
            cfg.promotion.approval_timeout_minutes,
            registered.name,
            registered.version,
        )
        return "timeout"
    reason = answer.reason or ("approved" if answer.approve else "rejected") + " in the Prefect UI"
    if registry_identity(cfg).verified:
        claimed = answer.approver.strip() or "(no name typed)"
        request_approval(cfg, registered.name, registered.version, answer.approve, reason, claimed)
        verb = "approve" if answer.approve else "reject"
        log.warning(
            "recorded the form's answer as a request; an approver completes it with `thaw %s %s %s --reason ...`",
            verb,
            registered.name,
            registered.version,
        )
        return "requested"
    decide, outcome = (approve, "approved") if answer.approve else (reject, "rejected")
    decide(cfg, registered.name, registered.version, reason, via=f"prefect form (typed name: {answer.approver[:60]})")
    return outcome
