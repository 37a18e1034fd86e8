"""Each model version's approval as the promotion ledger records it, and the version tags
that say otherwise.

An approval or a rejection writes the decision twice: as ledger entries (hash-chained,
signed where there is an approvers file: ``thaw.ledger``) and as the version's
``thaw.approval*`` tags, a copy the MLflow UI shows beside the version. Anyone with
MANAGE on the model can edit a tag. So thaw reads a version's state from the ledger
(``decisions``), and ``tag_problems`` lists every tag that no longer says what the
ledger does: a version tagged ``approved`` that nobody approved, a rejected one retagged
``pending``, an approver's name or reason rewritten, a tag citing another version's entry.

Pure functions; ``thaw.ledger.verify`` calls them with the registry's tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from thaw.shown import quoted_tag

APPROVAL_TAG = "thaw.approval"  # on a version: pending, approved or rejected
ENTRY_TAG = "thaw.approval.entry"  # on a version: the digest of the intent entry that decided it
PENDING = "pending"
STATE_AFTER = {"register": PENDING, "approve": "approved", "reject": "rejected"}
# the version tags copied from the deciding intent entry, and the entry field each copies
COPIED_FIELDS = {
    "thaw.approval.by": "by",
    "thaw.approval.identity": "identity",
    "thaw.approval.at": "at",
    "thaw.approval.reason": "reason",
}
FORCED_TAG = "thaw.approval.forced"  # on an approved version: whether the gate was overridden


def is_version(value: Any) -> bool:
    """A registry version number as an entry must hold it (entries are tags anyone with
    MANAGE can write; what a replay yields becomes an alias target)."""
    return isinstance(value, str) and value.isdigit() and len(value) <= 12


@dataclass(frozen=True)
class Decision:
    """A version's approval state as the ledger leaves it, and the intent entry that
    decided it (None while pending: registered, nothing decided)."""

    state: str
    intent: Mapping[str, Any] | None = None

    def tags(self) -> dict[str, str]:
        """The version tags this decision writes (``tasks.release.promotion``)."""
        if self.intent is None:
            return {APPROVAL_TAG: self.state}
        tags = {APPROVAL_TAG: self.state, ENTRY_TAG: str(self.intent["digest"])}
        tags |= {tag: str(self.intent.get(field, "")) for tag, field in COPIED_FIELDS.items()}
        if self.state == "approved":
            tags[FORCED_TAG] = str(bool(self.intent.get("force"))).lower()
        return tags


def applied(entries: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The intents of the operations that took effect on a version, in the order they
    completed (refused and not-applied ones, and any naming no version, left out).
    ``entries``: the chain in order, without entries whose signature does not hold."""
    entries = list(entries)
    intents = {e.get("op"): e for e in entries if e.get("phase") == "intent"}
    for e in entries:
        if e.get("phase") != "completion" or e.get("outcome") != "applied":
            continue
        intent = intents.get(e.get("op"))
        if intent is not None and is_version(intent.get("version")):
            yield intent


def decisions(entries: Iterable[Mapping[str, Any]]) -> dict[str, Decision]:
    """Each version's approval state after the ledger's applied operations: pending once
    registered, then approved or rejected by the last applied approval or rejection."""
    out: dict[str, Decision] = {}
    for intent in applied(entries):
        state = STATE_AFTER.get(intent.get("action"))
        if state is not None:
            out[intent["version"]] = Decision(state, None if state == PENDING else intent)
    return out


def tag_problems(version: str, tags: Mapping[str, str], decided: Decision | None) -> list[str]:
    """Where ``version``'s approval tags (``tags``: its ``thaw.approval*`` tags) differ
    from ``decided``, the ledger's decision (None: the ledger decided nothing, which reads
    as pending). A missing state tag reads as pending too."""
    state = decided.state if decided is not None else PENDING
    shown = tags.get(APPROVAL_TAG) or PENDING
    if shown != state:
        return [
            f"version {version} is tagged {APPROVAL_TAG}={quoted_tag(shown)}, but the ledger leaves it {state}: "
            "the tag was written outside thaw"
        ]
    if decided is None or decided.intent is None:
        return []
    problems = []
    for tag, expected in decided.tags().items():
        found = tags.get(tag)
        if found != expected:
            problems.append(
                f"version {version}'s tag {tag} reads {quoted_tag(found)}, but the ledger entry that "
                f"{decided.state} it ({str(decided.intent['digest'])[:12]}) says {quoted_tag(expected)}"
            )
    return problems
