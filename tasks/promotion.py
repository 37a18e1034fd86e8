"""Promotion: approve, reject, rollback, with an append-only ledger kept in the registry.

Every approval decision (promotion, refusal, rejection, rollback) is appended to the
ledger. The ledger lives in the registered model's own tags (``thaw.ledger.<seq>``, one JSON
entry each), so it travels with the registry and cannot be lost with a workstation.
Changes of ``champion`` happen under a registry-side lock (a registered model named
``<model>.promotion-lock``, whose creation is atomic in MLflow's database), so two
approvals at the same time leave one champion and both ledger entries.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from tasks.registry import CHALLENGER, CHAMPION, alias_version, client_for, is_missing, load_model_version
from thaw.config import ThawConfig
from thaw.datasets import read_split
from thaw.errors import UserError
from thaw.gate import Comparison
from thaw.promotion_gate import PromotionDecision, PromotionFacts, promotion_decision

LEDGER_PREFIX = "thaw.ledger."
LOCK_STALE_S = 600


def approver_identity(cfg: ThawConfig) -> str:
    """Who approves: the user authenticated to the tracking server (MLflow basic auth) when
    there is one, else THAW_APPROVER, else the OS user."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or os.environ.get("THAW_APPROVER") or getpass.getuser()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def promotion_lock(cfg: ThawConfig, name: str, timeout_s: float = 60) -> Iterator[None]:
    """Hold the model's promotion lock (an atomically created registered model)."""
    from mlflow.exceptions import MlflowException

    client = client_for(cfg)
    lock = f"{name}.promotion-lock"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"thaw.lock_taken_at": str(time.time())},
                description=f"held while thaw changes the champion of {name}",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # e.g. refused credentials: not ours to retry
                raise
            try:
                taken = float(client.get_registered_model(lock).tags.get("thaw.lock_taken_at", "0"))
                if time.time() - taken > LOCK_STALE_S:
                    client.delete_registered_model(lock)  # a crashed holder: break the stale lock
                    continue
            except MlflowException as gone:
                if gone.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                continue  # released in between: try again
            if time.monotonic() > deadline:
                raise UserError(f"another promotion of {name} is in progress (lock {lock!r}); try again") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def read_ledger(cfg: ThawConfig, name: str) -> list[dict[str, Any]]:
    """Ledger entries of ``name`` in order."""
    client = client_for(cfg)
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(LEDGER_PREFIX))]


def append_ledger(cfg: ThawConfig, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Append one entry (call under the promotion lock); returns it with its sequence number."""
    seq = len(read_ledger(cfg, name)) + 1
    entry = {"seq": seq, "at": _now(), **entry}
    client_for(cfg).set_registered_model_tag(name, f"{LEDGER_PREFIX}{seq:06d}", json.dumps(entry, sort_keys=True))
    return entry


def champion_stack(ledger: list[dict[str, Any]]) -> list[str]:
    """Champions in order of promotion, with rolled-back ones popped (replay of the ledger)."""
    stack: list[str] = []
    for entry in ledger:
        if entry["action"] == "promote":
            stack.append(entry["version"])
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise UserError(f"model {name!r} has no version {version}") from None


def compare_with_champion(cfg: ThawConfig, name: str, champion: str, challenger: str) -> Comparison:
    """Paired bootstrap of challenger vs champion on the challenger's recorded test split."""
    import pandas as pd

    from tasks.restore import restore_split
    from thaw.gate import RungScore, paired_comparison

    client = client_for(cfg)
    mv = client.get_model_version(name, challenger)
    test_file = restore_split(cfg, mv.tags, "test", cfg.state_path / "restore" / f"{name}-v{challenger}")
    test = read_split(test_file)
    y = test.labels
    preds = {}
    for v in (champion, challenger):
        model = load_model_version(cfg, name, v)
        preds[v] = tuple(model.predict(pd.DataFrame({"text": test.texts}))["label"])
    ladder = cfg.training.ladder
    return paired_comparison(
        y,
        RungScore(champion, 0, preds[champion]),
        RungScore(challenger, 0, preds[challenger]),
        "accuracy",
        ladder.bootstrap_samples,
        cfg.training.confidence_level,
        cfg.training.seed,
    )


def _record_on_version(
    client, name: str, version: str, state: str, by: str, reason: str, decision: PromotionDecision | None
) -> None:
    tags = {
        "thaw.approval": state,
        "thaw.approval.by": by,
        "thaw.approval.at": _now(),
        "thaw.approval.reason": reason[:4000],
    }
    if decision is not None:
        tags["thaw.approval.gate"] = " | ".join(decision.reasons)[:4000]
        tags["thaw.approval.forced"] = str(decision.forced).lower()
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)


def approve(
    cfg: ThawConfig,
    name: str,
    version: str,
    reason: str,
    force: bool = False,
    via: str = "cli",
    approver: str | None = None,
) -> PromotionDecision:
    """Approve ``version`` and, if the gate allows, make it champion (recorded either way)."""
    from tasks.restore import verify_lineage

    if not reason.strip():
        raise UserError("an approval needs --reason")
    client = client_for(cfg)
    by = approver or approver_identity(cfg)
    with promotion_lock(cfg, name):
        mv = _version(client, name, version)
        champion = alias_version(client, name, CHAMPION)
        lineage = verify_lineage(cfg, mv.tags)
        facts = PromotionFacts(
            version=version,
            is_current_challenger=alias_version(client, name, CHALLENGER) == version,
            rejected=mv.tags.get("thaw.approval") == "rejected",
            has_champion=champion is not None,
            versus_champion=compare_with_champion(cfg, name, champion, version)
            if champion and champion != version
            else None,
            lineage_problems=lineage.problems,
            lineage_notes=lineage.notes,
            force=force,
            force_reason=reason if force else "",
        )
        decision = promotion_decision(facts, cfg.training.ladder.alpha)
        if not decision.promote:  # refusals are part of the audit trail too
            append_ledger(
                cfg,
                name,
                {
                    "action": "refused",
                    "version": version,
                    "by": by,
                    "via": via,
                    "reason": reason,
                    "gate": list(decision.reasons),
                },
            )
            raise UserError(f"{name} v{version} not promoted: " + "; ".join(decision.reasons))
        _record_on_version(client, name, version, "approved", by, reason, decision)
        client.set_registered_model_alias(name, CHAMPION, version)
        client.delete_registered_model_alias(name, CHALLENGER)
        vs = asdict(facts.versus_champion) if facts.versus_champion else None
        append_ledger(
            cfg,
            name,
            {
                "action": "promote",
                "version": version,
                "previous_champion": champion,
                "by": by,
                "via": via,
                "reason": reason,
                "forced": decision.forced,
                "gate": list(decision.reasons),
                "versus_champion": vs,
            },
        )
    return decision


def reject(
    cfg: ThawConfig, name: str, version: str, reason: str, via: str = "cli", approver: str | None = None
) -> None:
    """Record a rejection; the version loses ``challenger`` and can no longer be promoted."""
    if not reason.strip():
        raise UserError("a rejection needs --reason")
    client = client_for(cfg)
    by = approver or approver_identity(cfg)
    with promotion_lock(cfg, name):
        _version(client, name, version)
        if alias_version(client, name, CHAMPION) == version:
            raise UserError(f"{name} v{version} is the champion; use `thaw rollback` to replace it")
        _record_on_version(client, name, version, "rejected", by, reason, None)
        if alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
        append_ledger(cfg, name, {"action": "reject", "version": version, "by": by, "via": via, "reason": reason})


def rollback(cfg: ThawConfig, name: str, reason: str) -> str:
    """Move ``champion`` back to the previous champion in the ledger; returns that version."""
    if not reason.strip():
        raise UserError("a rollback needs --reason")
    client = client_for(cfg)
    with promotion_lock(cfg, name):
        current = alias_version(client, name, CHAMPION)
        if current is None:
            raise UserError(f"{name} has no champion to roll back")
        stack = champion_stack(read_ledger(cfg, name))
        if len(stack) < 2:
            raise UserError(f"{name} has no previous champion to roll back to")
        target = stack[-2]
        client.set_registered_model_alias(name, CHAMPION, target)
        append_ledger(
            cfg,
            name,
            {
                "action": "rollback",
                "version": target,
                "previous_champion": current,
                "by": approver_identity(cfg),
                "via": "cli",
                "reason": reason,
            },
        )
    return target
