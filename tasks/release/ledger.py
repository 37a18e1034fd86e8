"""The promotion ledger in the registry: entries are tags of the registered model.

The registered model is the one resource every approver can write (MANAGE on it is what
makes an approver), so the ledger lives there: each entry a tag (``thaw.ledger.<ns>.<op>
.<phase>``), long texts continued in ``thaw.ledger_text.*`` tags, and the head anchor in
``thaw.ledger_head``. The format, the chain and its verification are in ``thaw.ledger``.
Entries are written only under the promotion lock (``tasks.release.promotion_lock``).

Tags are what the registry can hold for everyone with MANAGE on the model, but the MLflow
UI shows them as a raw, editable list. So every write also refreshes what an auditor
reads: the registered model's description (the history as a table, with any problem
``verify`` finds), an approval section in the version's description, and a copy of the
entry as a JSON artifact of the version's run (``ledger/``), which the UI cannot edit.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tasks.release.promotion_lock import PromotionLock
from tasks.tracking.identity import Identity
from thaw.approval_record import APPROVAL_TAG
from thaw.errors import UserError
from thaw.ledger import (
    DESCRIPTION_LIMIT,
    HEAD_TAG,
    HISTORY_COLUMNS,
    TEXT_FIELDS,
    LedgerReport,
    canonical_json,
    entry_key,
    full_text,
    head_value,
    history_markdown,
    history_rows,
    history_table,
    seal,
    split_text,
    table_cell,
    text_keys,
    verify,
)

if TYPE_CHECKING:
    from thaw.config import ThawConfig
    from thaw.signing import Approvers

log = logging.getLogger(__name__)
UNSIGNED = "unsigned: no approvers file"  # said on every entry written without a key
MAX_TAG = 5000  # MLflow's registered-model tag value column on PostgreSQL/MySQL


def new_op() -> str:
    return secrets.token_hex(6)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def ledger_report(client, name: str, approvers: Approvers | None) -> LedgerReport:
    """The verified ledger of ``name`` with the registry's current champion alias, its
    signatures checked against ``approvers`` (None: no approvers file, entries unsigned)."""
    return report_of(client.get_registered_model(name), client.search_model_versions(f"name='{name}'"), approvers)


def require_backed(client, name: str, approvers: Approvers | None, aliases: dict[str, str], by_number: str) -> None:
    """Refuse (UserError) to act on an alias (``aliases``: alias -> the version it is on)
    that the ledger does not put there: moved in the MLflow UI by anyone with MANAGE, or
    read while the ledger does not verify. ``by_number``: the command that names a version
    by number instead (``thaw serve NAME/N``)."""
    report = ledger_report(client, name, approvers)
    unbacked = [f"the {alias} alias is on v{v}" for alias, v in aliases.items() if not report.backs(alias, v)]
    if unbacked:
        replayed = {"champion": report.champion, "challenger": report.challenger}
        leaves = ", ".join(f"{alias} {'v' + v if v else 'unset'}" for alias, v in replayed.items())
        why = "; ".join(report.problems[:3]) or f"its replay leaves {leaves}"
        raise UserError(
            f"{name}: {' and '.join(unbacked)}, which the ledger does not back ({why}); thaw acts only on "
            f"what the ledger records. See `thaw ledger {name} --verify`, or name a version by number "
            f"(`{by_number}`)"
        )


def resolve_backed_version(cfg: ThawConfig, ref: str, command: str):
    """The ModelVersion ``ref`` names, refused (``require_backed``) when it names it by
    ``@champion`` or ``@challenger`` (or a bare name: the challenger) and the ledger does
    not put that alias there. ``command``: the thaw command, for the way out it names
    (``{command} NAME/N``). A version by number, or another alias, is used as named."""
    from tasks.tracking.client import client_for, parse_model_ref, resolve_version
    from tasks.tracking.identity import team_approvers

    mv = resolve_version(cfg, ref)  # a clear error when it does not exist
    _, alias, _ = parse_model_ref(ref)
    if alias in ("champion", "challenger"):  # what thaw moves, and the ledger records
        aliases = {alias: str(mv.version)}
        require_backed(client_for(cfg), mv.name, team_approvers(cfg), aliases, f"{command} {mv.name}/N")
    return mv


def report_of(rm, versions, approvers: Approvers | None) -> LedgerReport:
    """The verified ledger from a registered model and its versions, as read."""
    approval_tags = {
        str(mv.version): {k: v for k, v in mv.tags.items() if k.startswith(APPROVAL_TAG)} for mv in versions
    }
    aliases = {alias: str(version) for alias, version in (rm.aliases or {}).items()}
    return verify(
        rm.tags, aliases.get("champion"), approval_tags, approvers, rm.name, challenger_alias=aliases.get("challenger")
    )


def append(
    client,
    name: str,
    lock: PromotionLock,
    who: Identity,
    fields: dict[str, Any],
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one entry after the current head (under ``lock``); return it with its key.

    Long ``reason`` and ``details`` are stored whole in continuation tags and bound to the
    entry by their digest, so every tag fits MLflow's 5000-character limit."""
    lock.check()
    report = verify(client.get_registered_model(name).tags, None)
    texts, parts = {}, {}
    for field_name, text in (("reason", reason), ("details", json.dumps(details, sort_keys=True) if details else "")):
        if text:
            inline, rest = split_text(field_name, text)
            texts |= inline
            parts[field_name] = rest
    body = seal(
        {
            **fields,
            **texts,
            "at": now_iso(),
            "by": who.user,
            "identity": who.how if who.key is not None else f"{who.how}; {UNSIGNED}",
            "lock": lock.name,
        },
        report.head,
        who.key,
    )
    key = entry_key(time.time_ns(), fields["op"], fields["phase"])
    for field_name, rest in parts.items():
        for tag, part in zip(text_keys(key, field_name, len(rest)), rest, strict=True):
            client.set_registered_model_tag(name, tag, part)
    value = canonical_json(body)
    if len(value) > MAX_TAG:  # fields are bounded; this is our bug, not the user's
        raise AssertionError(f"ledger entry of {len(value)} characters exceeds {MAX_TAG}")
    lock.check()
    client.set_registered_model_tag(name, key, value)
    client.set_registered_model_tag(name, HEAD_TAG, head_value(len(report.entries) + 1, body["digest"]))
    entry = {**body, "key": key}
    publish_views(client, name, entry, who.approvers)
    return entry


APPROVAL_SECTION = "\n\n---\n\n## Approval history of this version\n"


def publish_views(client, name: str, entry: dict[str, Any], approvers: Approvers | None) -> None:
    """Refresh what the MLflow UI shows of the ledger after ``entry`` was written (one read
    of the model and its versions serves all three views)."""
    rm, versions = client.get_registered_model(name), client.search_model_versions(f"name='{name}'")
    report, tags = report_of(rm, versions, approvers), rm.tags
    details = {e["key"]: full_text(e, "details", tags)[0] for e in report.entries if e.get("phase") == "completion"}
    client.update_registered_model(name, description=history_markdown(name, report, details))
    version = entry.get("version")
    if version:
        _publish_version_section(client, name, str(version), report, details)
    _log_entry_artifact(client, name, versions, entry, {f: full_text(entry, f, tags)[0] for f in TEXT_FIELDS})


def _publish_version_section(client, name: str, version: str, report: LedgerReport, details) -> None:
    """The version's description is its model card; the approval section after it is
    rewritten from the ledger (so it always says what the ledger says), within MLflow's
    description limit."""
    rows = [r for r in history_rows(report, details) if r["version"] == f"v{version}"]
    card = (client.get_model_version(name, version).description or "").split(APPROVAL_SECTION)[0]
    tail = [
        "",
        f"Full history: the registered model's description; check it with `thaw ledger {name} --verify`.",
    ]
    if report.problems:
        tail.append("\n> **WARNING: the ledger does not verify**: " + table_cell("; ".join(report.problems[:3]), 600))
    budget = DESCRIPTION_LIMIT - len(card) - len(APPROVAL_SECTION) - sum(len(t) + 1 for t in tail) - 1
    columns = tuple(c for c in HISTORY_COLUMNS if c != "version")
    table = (
        history_table(rows, columns, budget, f"`thaw ledger {name}`")
        if budget > 400
        else [f"(the approval history does not fit beside this card: see `thaw ledger {name}`)"]
    )
    client.update_model_version(name, version, description=card + APPROVAL_SECTION + "\n".join(["", *table, *tail]))


def _log_entry_artifact(client, name: str, versions, entry: dict[str, Any], texts: dict[str, str]) -> None:
    """A read-only copy of the entry (long texts whole) under ``ledger/`` of the run of the
    version it concerns (else of the newest version). The tags stay the record: an
    approver may hold MANAGE on the model without write access to its runs."""
    from mlflow.exceptions import MlflowException
    from requests import HTTPError

    concerned = [mv for mv in versions if str(mv.version) == str(entry.get("version"))] or sorted(
        versions, key=lambda mv: -int(mv.version)
    )
    if not concerned or not concerned[0].run_id:
        return
    body = {**entry, **{k: v for k, v in texts.items() if v}}
    path = f"ledger/{name}/{entry['key'].removeprefix('thaw.ledger.')}.json"
    try:
        client.log_text(concerned[0].run_id, json.dumps(body, indent=2, sort_keys=True), path)
    except (MlflowException, HTTPError) as exc:  # e.g. 403: MANAGE on the model, only READ on the run
        # a copy: the entry is already in the tags, and the operation must not stop half-way for it
        log.warning("ledger entry %s kept in the registry tags only; its artifact copy failed: %s", entry["key"], exc)
