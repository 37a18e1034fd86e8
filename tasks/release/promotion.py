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
the one the tracking server authenticated (``tasks.tracking.identity``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.release.ledger import ENTRY_TAG, append, ledger_report, new_op
from tasks.release.promotion_lock import PromotionLock, acquire, promotion_lock
from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version, client_for, is_missing
from tasks.tracking.identity import Identity, registry_identity
from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.ledger import LedgerReport, Operation, completion_fields
from thaw.promotion_gate import PromotionDecision, PromotionFacts, promotion_decision

log = logging.getLogger(__name__)
FAILPOINT_ENV = "THAW_TEST_KILL_AT"  # tests: SIGKILL this process at the named point


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
    report = ledger_report(client, name)
    written = []
    for operation in report.open_operations:
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
        if tags.get("thaw.approval") == "rejected":
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
    tags = {
        "thaw.approval": "approved",
        "thaw.approval.by": intent["by"],
        "thaw.approval.identity": intent["identity"],
        "thaw.approval.at": intent["at"],
        "thaw.approval.reason": intent.get("reason", ""),
        "thaw.approval.forced": str(bool(intent.get("force"))).lower(),
        ENTRY_TAG: intent["digest"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)


def _gate(
    cfg: ThawConfig, client, name: str, version: str, mv, champion: str | None, force: bool, reason: str
) -> tuple[PromotionDecision, dict[str, Any]]:
    """The gate's decision on ``version`` now, and the details the ledger keeps."""
    from tasks.release.champion_comparison import compare_with_champion
    from tasks.versioning.restore import verify_lineage

    lineage = verify_lineage(cfg, mv.tags)
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
        rejected=mv.tags.get("thaw.approval") == "rejected",
        has_champion=champion is not None and champion != version,
        versus_champion=versus.comparison if versus else None,
        lineage_problems=lineage.problems,
        lineage_notes=lineage.notes,
        force=force,
        force_reason=reason if force else "",
        comparison_summary=summary,
    )
    decision = promotion_decision(facts, cfg.training.ladder.alpha)
    return decision, {"gate": list(decision.reasons), "versus_champion": versus.as_dict() if versus else None}


def preview_gate(cfg: ThawConfig, name: str, version: str) -> PromotionDecision:
    """What the gate would decide on an approval of ``version`` now, without --force;
    nothing is written. Shown to the approver before they answer."""
    client = client_for(cfg)
    champion = alias_version(client, name, CHAMPION)
    return _gate(cfg, client, name, version, _version(client, name, version), champion, False, "")[0]


def approve(
    cfg: ThawConfig,
    name: str,
    version: str,
    reason: str,
    force: bool = False,
    via: str = "cli",
    who: Identity | None = None,
) -> PromotionDecision:
    """Approve ``version``: record the intent, run the gate, and if it passes make the
    version champion; the completion records the outcome either way. Refused: UserError.
    ``who`` defaults to the identity the registry authenticates (``tasks.tracking.identity``)."""
    _require_reason(reason, "an approval")
    client, who = client_for(cfg), who or registry_identity(cfg)
    with locked_operation(cfg, name, who, f"approve v{version}") as lock:
        mv = _version(client, name, version)
        champion = alias_version(client, name, CHAMPION)
        request = _pending_request(ledger_report(client, name), version)
        intent = append(
            client,
            name,
            lock,
            who,
            _intent("approve", version, champion_before=champion, via=via, force=force, request=request),
            reason,
        )
        _failpoint("approve:after-intent")
        decision, details = _gate(cfg, client, name, version, mv, champion, force, reason)
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
    cfg: ThawConfig, name: str, version: str, reason: str, via: str = "cli", who: Identity | None = None
) -> None:
    """Record a rejection; the version loses ``challenger`` and can no longer be promoted."""
    _require_reason(reason, "a rejection")
    client, who = client_for(cfg), who or registry_identity(cfg)
    with locked_operation(cfg, name, who, f"reject v{version}") as lock:
        _version(client, name, version)
        if alias_version(client, name, CHAMPION) == version:
            raise UserError(f"{name} v{version} is the champion; use `thaw rollback` to replace it")
        intent = append(client, name, lock, who, _intent("reject", version, via=via), reason)
        _failpoint("reject:after-intent")
        for key, value in {
            "thaw.approval": "rejected",
            "thaw.approval.by": who.user,
            "thaw.approval.identity": who.how,
            "thaw.approval.at": intent["at"],
            "thaw.approval.reason": intent.get("reason", ""),
            ENTRY_TAG: intent["digest"],
        }.items():
            client.set_model_version_tag(name, version, key, value)
        if alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        append(client, name, lock, who, completion_fields(intent, "applied"))


def rollback(cfg: ThawConfig, name: str, reason: str) -> str:
    """Move ``champion`` back to the champion before it in the ledger; returns that version."""
    _require_reason(reason, "a rollback")
    client, who = client_for(cfg), registry_identity(cfg)
    with locked_operation(cfg, name, who, "rollback") as lock:
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise UserError(f"{name} has no champion to roll back")
        report = ledger_report(client, name)
        if report.problems:
            raise UserError(
                f"{name}: the ledger does not verify, so the champion before v{current} is not known for sure: "
                + "; ".join(report.problems[:3])
                + " (see `thaw ledger --verify`)"
            )
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
    with locked_operation(cfg, name, who, f"register v{version}") as lock:
        if alias_version(client, name, CHALLENGER) == version:
            return  # a retried registration: already done and recorded
        before = alias_version(client, name, CHALLENGER)
        intent = append(client, name, lock, who, _intent("register", version, challenger_before=before, via="pipeline"))
        _failpoint("register:after-intent")
        lock.check()
        client.set_registered_model_alias(name, CHALLENGER, version)
        client.set_model_version_tag(name, version, "thaw.approval", "pending")
        append(client, name, lock, who, completion_fields(intent, "applied", challenger_after=version))


def request_approval(cfg: ThawConfig, name: str, version: str, approve_it: bool, reason: str, claimed_by: str) -> None:
    """Record an answer typed into the Prefect form as a request: the form's user is not
    authenticated, so ``thaw approve``/``reject`` by an authenticated approver decides."""
    client, who = client_for(cfg), registry_identity(cfg)
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
        )


def _pending_request(report: LedgerReport, version: str) -> str | None:
    """The op id of the latest approval request recorded for ``version``, if any."""
    requests = [e["op"] for e in report.entries if e.get("action") == "request" and e.get("version") == version]
    return requests[-1] if requests else None


def unlock(cfg: ThawConfig, name: str, reason: str) -> str:
    """Break the promotion lock now (a hung holder), recorded with who and why; returns
    a description of the holder that was broken (or that the lock was free)."""
    _require_reason(reason, "an unlock")
    client, who = client_for(cfg), registry_identity(cfg)
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
