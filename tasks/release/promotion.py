"""Promotion: register, approve, reject, rollback and unlock, each recorded before it acts.

Every operation that can move an alias runs under the model's promotion lock
(``tasks.release.promotion_lock``) and follows one protocol:

1. recover: an earlier operation whose intent has no completion (its process died) is
   completed now from what the registry shows (the alias moved or not), by whoever
   comes next, and says so;
2. write the **intent** (what, which version, the champion before, who, why);
3. act: decide (the gate), move the alias, tag the version;
4. write the **completion** (applied, refused or not applied, with the numbers).

So the alias never moves without a record, and a crash anywhere leaves an intent that the
next reader reports (``thaw ledger``) and the next operation completes. The identity is
the one the tracking server authenticated (``tasks.tracking.identity``) and, where the
team keeps an approvers file, the one its signing key proves: every entry is then signed.

Separation of duties (where identities are proven, ``promotion.separate_duties``): the
approver of a version is not who trained or registered it; a forced approval needs a
second approver's co-signature (``cosign``). ``approve``, ``reject`` and ``rollback``
refuse while the ledger does not verify, until the problem is repaired or an approver
acknowledges it (``acknowledge``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.release.ledger import append, ledger_report, new_op
from tasks.release.promotion_lock import PromotionLock, acquire, promotion_lock
from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version, client_for, is_missing
from tasks.tracking.identity import Identity, acting_identity
from thaw.approval_record import APPROVAL_TAG, PENDING, Decision
from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.ledger import LedgerReport, Operation, completion_fields
from thaw.promotion_gate import PromotionDecision, PromotionFacts, promotion_decision
from thaw.signing import entry_problems

log = logging.getLogger(__name__)
FAILPOINT_ENV = "THAW_TEST_KILL_AT"  # tests: SIGKILL this process at the named point
ACKNOWLEDGED_PER_ENTRY = 60  # problem digests per acknowledgement entry (33 characters each)


def _failpoint(point: str) -> None:
    """Die here, as a crash would, when the fault tests ask for it."""
    if os.environ.get(FAILPOINT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def locked_operation(cfg: ThawConfig, name: str, who: Identity, purpose: str) -> Iterator[PromotionLock]:
    """The promotion lock, with a broken stale lock recorded and earlier interrupted
    operations completed before anything new happens."""
    client = client_for(cfg)
    with promotion_lock(cfg, name, who.user, purpose) as lock:
        if lock.broken:
            append(
                client,
                name,
                lock,
                who,
                {"op": new_op(), "phase": "record", "action": "break-lock"},
                "the lease of the lock ran out: taken over from " + "; ".join(h.describe() for h in lock.broken),
            )
        recover(client, name, lock, who)
        yield lock


def recover(client, name: str, lock: PromotionLock, who: Identity) -> list[dict[str, Any]]:
    """Complete every intent left without a completion, from what the registry shows."""
    report = ledger_report(client, name, who.approvers)
    written = []
    for operation in report.open_operations:
        if who.approvers is not None and entry_problems(operation.intent, who.approvers):
            continue  # not an intent anyone listed wrote: --verify reports it, nobody completes it
        outcome, note = _observe(client, name, operation)
        written.append(
            append(
                client,
                name,
                lock,
                who,
                completion_fields(operation.intent, outcome, recovered=True),
                f"completed after an interruption by {who.user}: {note}",
            )
        )
    return written


def _observe(client, name: str, operation: Operation) -> tuple[str, str]:
    """Whether an interrupted operation took effect, finishing what it had started."""
    intent, version = operation.intent, operation.intent.get("version")
    if operation.action == "approve":
        if alias_version(client, name, CHAMPION) == version:
            _finish_approval(client, name, intent)
            return "applied", f"champion is v{version}: the promotion took effect, its version tags completed"
        return "not-applied", f"champion is still {_v(alias_version(client, name, CHAMPION))}: nothing moved"
    if operation.action == "rollback":
        current = alias_version(client, name, CHAMPION)
        moved = current == version
        return ("applied" if moved else "not-applied"), f"champion is {_v(current)}"
    if operation.action == "register":
        current = alias_version(client, name, CHALLENGER)
        moved = current == version
        return ("applied" if moved else "not-applied"), f"challenger is {_v(current)}"
    if operation.action == "reject":
        tags = client.get_model_version(name, version).tags
        if tags.get(APPROVAL_TAG) == "rejected":
            if alias_version(client, name, CHALLENGER) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
            return "applied", f"v{version} is tagged rejected: the rejection took effect"
        return "not-applied", f"v{version} was not tagged rejected: nothing changed"
    return "not-applied", "interrupted before it acted"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "unset"


def _require_reason(reason: str, what: str) -> None:
    if not reason.strip():
        raise UserError(f"{what} needs --reason")


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise UserError(f"model {name!r} has no version {version}") from None


def _intent(action: str, version: str | None, **fields: Any) -> dict[str, Any]:
    return {"op": new_op(), "phase": "intent", "action": action, "version": version, **fields}


def _finish_approval(client, name: str, intent: dict[str, Any]) -> None:
    """Version tags of an applied approval, and the challenger alias off it."""
    version = intent["version"]
    for key, value in Decision("approved", intent).tags().items():
        client.set_model_version_tag(name, version, key, value)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)


def live_evidence(cfg: ThawConfig, name: str, champion: str | None, challenger: str):
    """What live traffic says about ``challenger`` beside ``champion`` (a
    ``thaw.canary.CanaryReport``), or None when it never met traffic beside it. A store
    that cannot be read is said in the report's place (UserError), never skipped."""
    from thaw.request_store import RequestStore, store_exists

    if champion is None or champion == challenger or not store_exists(cfg):
        return None
    store = RequestStore.for_config(cfg)
    try:
        report = store.report(name, champion, challenger)
    finally:
        store.close()
    return report if report.requests or report.breaches else None


def _gate(
    cfg: ThawConfig,
    client,
    name: str,
    version: str,
    mv,
    champion: str | None,
    force: bool,
    reason: str,
    decided: Decision | None,
    live=None,
) -> tuple[PromotionDecision, dict[str, Any]]:
    """The gate's decision on ``version`` now, and the details the ledger keeps.
    ``decided``: the version's approval as the ledger records it; a rejection there or in
    its tag refuses (a tag anyone may edit cannot undo one)."""
    from tasks.release.champion_comparison import compare_with_champion
    from tasks.tracking.client import run_of
    from tasks.tracking.dataset_inputs import logged_facts
    from tasks.tracking.run_record import read_run_record
    from tasks.versioning.restore import verify_lineage

    run = run_of(client, mv.run_id)  # read once: its logged inputs and its params and metrics
    lineage = verify_lineage(cfg, mv.tags, logged_facts(run.inputs.dataset_inputs) if run is not None else {})
    edited = read_run_record(client, run, dict(mv.tags)).problems  # a rung or score tag rewritten since the run
    versus, summary = None, ""
    if champion and champion != version:
        try:
            versus = compare_with_champion(cfg, name, champion, version)
            summary = versus.summary()
        except UserError as exc:  # e.g. a split no longer in the remote: no comparison, said why
            summary = f"no comparison with champion v{champion}: {exc}"
    facts = PromotionFacts(
        version=version,
        is_current_challenger=alias_version(client, name, CHALLENGER) == version,
        rejected=mv.tags.get(APPROVAL_TAG) == "rejected" or (decided is not None and decided.state == "rejected"),
        has_champion=champion is not None and champion != version,
        versus_champion=versus.comparison if versus else None,
        lineage_problems=(*lineage.problems, *edited),
        lineage_notes=lineage.notes,
        force=force,
        force_reason=reason if force else "",
        comparison_summary=summary,
        live_breaches=tuple(f"{b['at']}: {b['reason']}" for b in live.breaches) if live else (),
        live_summary=live_line(live) if live else "",
    )
    decision = promotion_decision(facts, cfg.training.ladder.alpha)
    details = {"gate": list(decision.reasons), "versus_champion": versus.as_dict() if versus else None}
    return decision, details | ({"live_evidence": live.as_dict()} if live else {})


def live_line(report) -> str:
    """The live evidence in one line (the gate's reasons, the ledger, the CLI)."""
    return (
        f"live traffic beside champion v{report.champion}: {report.requests:,} requests, agreement "
        f"{report.agreement.text()}; challenger accuracy {report.accuracy['challenger'].text()} labelled"
    )


def preview_gate(cfg: ThawConfig, name: str, version: str) -> PromotionDecision:
    """What the gate would decide on an approval of ``version`` now, without --force;
    nothing is written. Shown to the approver before they answer."""
    from tasks.tracking.identity import team_approvers

    client = client_for(cfg)
    champion = alias_version(client, name, CHAMPION)
    live = live_evidence(cfg, name, champion, version)
    decided = ledger_report(client, name, team_approvers(cfg)).decision(version)
    mv = _version(client, name, version)
    return _gate(cfg, client, name, version, mv, champion, False, "", decided, live)[0]


def approve(
    cfg: ThawConfig,
    name: str,
    version: str,
    reason: str,
    force: bool = False,
    via: str = "cli",
    who: Identity | None = None,
    shown_live: dict[str, Any] | None = None,
) -> PromotionDecision:
    """Approve ``version``: record the intent, run the gate, and if it passes make the
    version champion; the completion records the outcome either way. Refused: UserError.
    ``who`` defaults to the identity the registry authenticates (``tasks.tracking.identity``).
    The intent records the live evidence the approver saw: ``shown_live`` (what the form
    showed them) or, by default, the canary report as it stands now (what the CLI prints)."""
    _require_reason(reason, "an approval")
    client, who = client_for(cfg), who or acting_identity(cfg)
    for permission in ("approve", "force") if force else ("approve",):  # a forced approval is both
        _require_permission(who, permission, name)
    with locked_operation(cfg, name, who, f"approve v{version}") as lock:
        mv = _version(client, name, version)
        champion = alias_version(client, name, CHAMPION)
        report = _verified_report(client, name, who, "an approval")
        _require_second_person(cfg, client, report, mv, who)
        cosigned = _cosignature(report, version, who) if force else None
        request = _pending_request(report, version)
        fields = {"champion_before": champion, "via": via, "force": force, "request": request}
        live = live_evidence(cfg, name, champion, version)
        shown = shown_live or (live.as_dict() if live else None)
        seen = {"live_evidence": shown} if shown else None
        intent = append(
            client, name, lock, who, _intent("approve", version, **fields, **_cosigned(cosigned)), reason, details=seen
        )
        _failpoint("approve:after-intent")
        decided = report.decision(version)
        decision, details = _gate(cfg, client, name, version, mv, champion, force, reason, decided, live)
        if not decision.promote:
            append(client, name, lock, who, completion_fields(intent, "refused"), details=details)
            raise UserError(f"{name} v{version} not promoted: " + "; ".join(decision.reasons))
        lock.check()
        client.set_registered_model_alias(name, CHAMPION, version)
        _failpoint("approve:after-alias")
        _finish_approval(client, name, intent)
        append(
            client,
            name,
            lock,
            who,
            completion_fields(intent, "applied", champion_after=version, forced=decision.forced),
            details=details,
        )
    return decision


def reject(
    cfg: ThawConfig,
    name: str,
    version: str,
    reason: str,
    via: str = "cli",
    who: Identity | None = None,
    shown_live: dict[str, Any] | None = None,
) -> None:
    """Record a rejection; the version loses ``challenger`` and can no longer be promoted.
    The intent keeps the live evidence the approver was shown (``shown_live``), if any."""
    _require_reason(reason, "a rejection")
    client, who = client_for(cfg), who or acting_identity(cfg)
    _require_permission(who, "reject", name)
    with locked_operation(cfg, name, who, f"reject v{version}") as lock:
        _version(client, name, version)
        _verified_report(client, name, who, "a rejection")
        if alias_version(client, name, CHAMPION) == version:
            raise UserError(f"{name} v{version} is the champion; use `thaw rollback` to replace it")
        seen = {"live_evidence": shown_live} if shown_live else None
        intent = append(client, name, lock, who, _intent("reject", version, via=via), reason, details=seen)
        _failpoint("reject:after-intent")
        for key, value in Decision("rejected", intent).tags().items():
            client.set_model_version_tag(name, version, key, value)
        if alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        append(client, name, lock, who, completion_fields(intent, "applied"))


def rollback(cfg: ThawConfig, name: str, reason: str) -> str:
    """Move ``champion`` back to the champion before it in the ledger; returns that version."""
    _require_reason(reason, "a rollback")
    client, who = client_for(cfg), acting_identity(cfg)
    _require_permission(who, "rollback", name)
    with locked_operation(cfg, name, who, "rollback") as lock:
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise UserError(f"{name} has no champion to roll back")
        report = _verified_report(client, name, who, "a rollback (the champion before it is not known for sure)")
        history = report.champion_history
        if len(history) < 2:
            raise UserError(f"{name} has no previous champion to roll back to")
        target = history[-2]
        intent = append(client, name, lock, who, _intent("rollback", target, champion_before=current), reason)
        _failpoint("rollback:after-intent")
        lock.check()
        client.set_registered_model_alias(name, CHAMPION, target)
        _failpoint("rollback:after-alias")
        append(client, name, lock, who, completion_fields(intent, "applied", champion_after=target))
    return target


def register_challenger(cfg: ThawConfig, name: str, version: str, who: Identity) -> None:
    """Make a newly registered ``version`` the challenger, recorded like any alias move."""
    client = client_for(cfg)
    _require_permission(who, "register", name)
    with locked_operation(cfg, name, who, f"register v{version}") as lock:
        if alias_version(client, name, CHALLENGER) == version:
            return  # a retried registration: already done and recorded
        before = alias_version(client, name, CHALLENGER)
        intent = append(client, name, lock, who, _intent("register", version, challenger_before=before, via="pipeline"))
        _failpoint("register:after-intent")
        lock.check()
        client.set_registered_model_alias(name, CHALLENGER, version)
        client.set_model_version_tag(name, version, APPROVAL_TAG, PENDING)
        append(client, name, lock, who, completion_fields(intent, "applied", challenger_after=version))


def request_approval(
    cfg: ThawConfig,
    name: str,
    version: str,
    approve_it: bool,
    reason: str,
    claimed_by: str,
    shown_live: dict[str, Any] | None = None,
) -> None:
    """Record an answer typed into the Prefect form as a request: the form's user is not
    authenticated, so ``thaw approve``/``reject`` by an authenticated approver decides.
    The request keeps the live evidence the form showed."""
    client, who = client_for(cfg), acting_identity(cfg)
    with locked_operation(cfg, name, who, f"approval request for v{version}") as lock:
        append(
            client,
            name,
            lock,
            who,
            {
                "op": new_op(),
                "phase": "record",
                "action": "request",
                "version": version,
                "requested": "approve" if approve_it else "reject",
                "claimed_by": claimed_by[:100],
                "via": "prefect",
            },
            reason,
            details={"live_evidence": shown_live} if shown_live else None,
        )


def record_canary_fallback(
    cfg: ThawConfig, name: str, champion: str, challenger: str, reason: str, detail: dict, breach_at: str
) -> None:
    """Record in the ledger that ``challenger``'s live traffic breached the canary's
    thresholds and all traffic went back to ``champion`` (no alias moves)."""
    client, who = client_for(cfg), acting_identity(cfg)
    with locked_operation(cfg, name, who, f"canary fallback of v{challenger}") as lock:
        fields = {
            "op": new_op(),
            "phase": "record",
            "action": "canary-fallback",
            "version": challenger,
            "champion_before": champion,
            "via": "thaw serve",
            "breach_at": str(breach_at)[:40],
        }
        append(client, name, lock, who, fields, reason[:2000], details=detail)


def _pending_request(report: LedgerReport, version: str) -> str | None:
    """The op id of the latest approval request recorded for ``version``, if any."""
    requests = [e["op"] for e in report.entries if e.get("action") == "request" and e.get("version") == version]
    return requests[-1] if requests else None


def _require_permission(who: Identity, permission: str, name: str) -> None:
    if not who.may(permission):
        where = who.approvers.path if who.approvers else "the approvers file"
        raise UserError(f"{name}: {who.user}'s key may not {permission} ({where})")


def _verified_report(client, name: str, who: Identity, what: str) -> LedgerReport:
    """The ledger, which must verify before ``what`` acts on it; else UserError listing
    what is wrong and how to recover."""
    report = ledger_report(client, name, who.approvers)
    if report.problems:
        shown = "; ".join(report.problems[:5]) + (
            f"; and {len(report.problems) - 5} more" if len(report.problems) > 5 else ""
        )
        raise UserError(
            f"{name}: the ledger does not verify, so {what} is refused: {shown}. To recover: repair what was "
            f"changed (an edited entry from its copy under ledger/ in the run's artifacts, an alias moved back "
            f"to the ledger's champion), or, once the cause is understood, acknowledge the problems: "
            f"`thaw ledger {name} --acknowledge --reason ...` (see `thaw ledger {name} --verify`)"
        )
    return report


def _creators(client, report: LedgerReport, mv) -> dict[str, str]:
    """Who had a hand in ``mv``: the run's user and who registered it, by name."""
    hands = {}
    if mv.run_id:
        user = client.get_run(mv.run_id).data.tags.get("mlflow.user")
        if user:
            hands[user] = "ran the training run"
    for e in report.entries:
        if e.get("action") == "register" and e.get("phase") == "intent" and e.get("version") == str(mv.version):
            hands.setdefault(str(e.get("by")), "registered it")
    return hands


def _require_second_person(cfg: ThawConfig, client, report: LedgerReport, mv, who: Identity) -> None:
    """Refuse a self-approval where identities are proven (signed, or authenticated)."""
    if not (cfg.promotion.separate_duties and who.verified):
        return
    hand = _creators(client, report, mv).get(who.user)
    if hand:
        raise UserError(
            f"{mv.name} v{mv.version}: {who.user} {hand}, so {who.user} may not approve it; "
            "another approver must (promotion.separate_duties)"
        )


def _cosignature(report: LedgerReport, version: str, who: Identity) -> dict[str, Any] | None:
    """The co-signature a forced approval of ``version`` rests on: a ``cosign`` entry by
    another approver, after the version was last registered, not used by an earlier
    forced approval. None where entries are unsigned (nothing could prove a second person);
    UserError when signed and there is none."""
    if who.approvers is None:
        return None
    start = max(
        (i for i, e in enumerate(report.entries) if e.get("action") == "register" and e.get("version") == version),
        default=-1,
    )
    used = {e.get("cosigned") for e in report.entries if e.get("action") == "approve" and e.get("phase") == "intent"}
    for e in reversed(report.entries[start + 1 :]):
        by_another = e.get("by") != who.user and e["op"] not in used
        if e.get("action") == "cosign" and e.get("version") == version and by_another:
            return e
    raise UserError(
        f"v{version}: a forced approval needs a second approver's co-signature; another approver whose key may "
        f"force runs `thaw cosign MODEL {version} --reason ...` first"
    )


def _cosigned(entry: dict[str, Any] | None) -> dict[str, Any]:
    return {"cosigned": entry["op"], "cosigned_by": entry.get("by")} if entry else {}


def cosign(cfg: ThawConfig, name: str, version: str, reason: str) -> None:
    """Co-sign a forced approval of ``version`` another approver will make."""
    _require_reason(reason, "a co-signature")
    client, who = client_for(cfg), acting_identity(cfg)
    if who.approvers is None:
        raise UserError(f"{name}: a co-signature needs an approvers file ({cfg.promotion.approvers_file}) and keys")
    _require_permission(who, "force", name)
    with locked_operation(cfg, name, who, f"cosign v{version}") as lock:
        _version(client, name, version)
        _verified_report(client, name, who, "a co-signature")
        append(
            client, name, lock, who, {"op": new_op(), "phase": "record", "action": "cosign", "version": version}, reason
        )


def acknowledge(cfg: ThawConfig, name: str, reason: str) -> list[str]:
    """Record that an approver has seen what ``verify`` reports and accepts it: those
    problems become notes naming who acknowledged them, and the champion and challenger
    aliases as they are now are adopted. Returns the problems acknowledged."""
    from thaw.ledger import ACKNOWLEDGE, problem_digest

    _require_reason(reason, "an acknowledgement")
    client, who = client_for(cfg), acting_identity(cfg)
    _require_permission(who, "acknowledge", name)
    with locked_operation(cfg, name, who, "acknowledge") as lock:
        report = ledger_report(client, name, who.approvers)
        if not report.problems:
            return []
        champion, challenger = alias_version(client, name, CHAMPION), alias_version(client, name, CHALLENGER)
        problems = list(report.problems)
        for start in range(0, len(problems), ACKNOWLEDGED_PER_ENTRY):  # each entry within a tag's limit
            part = problems[start : start + ACKNOWLEDGED_PER_ENTRY]
            fields = {
                "op": new_op(),
                "phase": "record",
                "action": ACKNOWLEDGE,
                "acknowledged": [problem_digest(p) for p in part],
                "champion": champion,
                "challenger": challenger,
            }
            append(client, name, lock, who, fields, reason, details={"problems": part})
    return problems


def unlock(cfg: ThawConfig, name: str, reason: str) -> str:
    """Break the promotion lock now (a hung holder), recorded with who and why; returns
    a description of the holder that was broken (or that the lock was free)."""
    _require_reason(reason, "an unlock")
    client, who = client_for(cfg), acting_identity(cfg)
    lock = acquire(cfg, name, who.user, "unlock", force=True)
    try:
        broken = "; ".join(h.describe() for h in lock.broken) or "the lock was free"
        append(
            client,
            name,
            lock,
            who,
            {"op": new_op(), "phase": "record", "action": "unlock", "broken": broken[:1000]},
            reason,
        )
    finally:
        lock.release()
    return broken
