"""The promotion ledger in the registry: entries are tags of the registered model.

The registered model is the one resource every approver can write (MANAGE on it is what
makes an approver), so the ledger lives there: each entry a tag (``thaw.ledger.<ns>.<op>
.<phase>``), long texts continued in ``thaw.ledger_text.*`` tags, and the head anchor in
``thaw.ledger_head``. The format, the chain and its verification are in ``thaw.ledger``.
Entries are written only under the promotion lock (``tasks.promotion_lock``).
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from tasks.identity import Identity
from tasks.promotion_lock import PromotionLock
from thaw.ledger import (
    HEAD_TAG,
    TEXT_FIELDS,
    LedgerReport,
    canonical_json,
    entry_key,
    full_text,
    head_value,
    seal,
    split_text,
    text_keys,
    verify,
)

ENTRY_TAG = "thaw.approval.entry"  # on a version: the digest of the entry that decided it
MAX_TAG = 5000  # MLflow's registered-model tag value column on PostgreSQL/MySQL


def new_op() -> str:
    return secrets.token_hex(6)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def ledger_report(client, name: str) -> LedgerReport:
    """The verified ledger of ``name`` with the registry's current champion alias."""
    rm = client.get_registered_model(name)
    cited = {}
    for mv in client.search_model_versions(f"name='{name}'"):
        if ENTRY_TAG in mv.tags:
            cited[str(mv.version)] = mv.tags[ENTRY_TAG]
    champion = (rm.aliases or {}).get("champion")
    return verify(rm.tags, str(champion) if champion is not None else None, cited)


def entry_texts(client, name: str, entry: dict[str, Any]) -> dict[str, str]:
    """The full long-text fields of an entry (reason, details), reassembled."""
    tags = client.get_registered_model(name).tags
    return {field: full_text(entry, field, tags)[0] for field in TEXT_FIELDS}


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
            "identity": who.how,
            "lock": lock.name,
        },
        report.head,
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
    return {**body, "key": key}
