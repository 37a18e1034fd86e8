"""The ledger's chain, anchor, long texts and replay: what --verify reports for each way
an entry can be edited, deleted or left incomplete."""

from __future__ import annotations

import json

from thaw.approval_record import ENTRY_TAG, Decision
from thaw.ledger import (
    GENESIS,
    HEAD_TAG,
    canonical_json,
    completion_fields,
    entry_key,
    head_value,
    seal,
    split_text,
    text_keys,
    verify,
)


class Ledger:
    """Tags as the registry would hold them, written the way tasks.release.ledger writes them."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.count, self.head, self.clock = 0, GENESIS, 0

    def write(self, fields: dict, reason: str = "") -> dict:
        self.clock += 1
        texts, parts = split_text("reason", reason) if reason else ({}, [])
        body = seal({**fields, **texts, "by": "ana", "identity": "authenticated"}, self.head)
        key = entry_key(self.clock, fields["op"], fields["phase"])
        for tag, part in zip(text_keys(key, "reason", len(parts)), parts, strict=True):
            self.tags[tag] = part
        self.tags[key] = canonical_json(body)
        self.count, self.head = self.count + 1, body["digest"]
        self.tags[HEAD_TAG] = head_value(self.count, self.head)
        return {**body, "key": key}

    def operation(self, op: str, action: str, version: str, outcome: str | None = "applied", reason: str = "ok"):
        intent = self.write({"op": op, "phase": "intent", "action": action, "version": version}, reason)
        if outcome:
            self.write(completion_fields(intent, outcome))
        return intent

    def keys(self) -> list[str]:
        return sorted(k for k in self.tags if k.startswith("thaw.ledger."))


def promoted_twice() -> Ledger:
    ledger = Ledger()
    ledger.operation("a", "register", "1")
    ledger.operation("b", "approve", "1")
    ledger.operation("c", "register", "2")
    ledger.operation("d", "approve", "2")
    return ledger


def test_an_untouched_ledger_verifies_and_replays_the_champion():
    ledger = promoted_twice()
    report = verify(ledger.tags, "2")
    assert report.ok and report.problems == ()
    assert report.notes == ("entries are unsigned: there is no approvers file to check them against",)
    assert report.champion == "2" and report.champion_history == ("1", "2")
    assert [e["phase"] for e in report.entries] == ["intent", "completion"] * 4


def test_an_edited_entry_no_longer_matches_its_digest():
    ledger = promoted_twice()
    key = ledger.keys()[2]
    body = json.loads(ledger.tags[key])
    body["by"] = "mallory"
    ledger.tags[key] = json.dumps(body)
    report = verify(ledger.tags, "2")
    assert any(key in p and "edited" in p for p in report.problems)


def test_a_deleted_entry_in_the_middle_leaves_a_gap():
    ledger = promoted_twice()
    del ledger.tags[ledger.keys()[3]]
    assert any("missing" in p and "deleted" in p for p in verify(ledger.tags, "2").problems)


def test_a_deleted_last_entry_is_caught_by_the_head_anchor():
    ledger = promoted_twice()
    del ledger.tags[ledger.keys()[-1]]
    problems = verify(ledger.tags, "2").problems
    assert any("head anchor counts 8 entries but 7 remain" in p for p in problems)


def test_a_head_anchor_one_write_behind_is_a_crash_not_tampering():
    ledger = promoted_twice()
    ledger.tags[HEAD_TAG] = head_value(7, json.loads(ledger.tags[ledger.keys()[-1]])["prev"])
    report = verify(ledger.tags, "2")
    assert report.ok and "one entry behind" in report.notes[0]


def test_two_entries_after_the_same_one_are_a_fork():
    ledger = promoted_twice()
    rival = seal({"op": "x", "phase": "record", "action": "note"}, json.loads(ledger.tags[ledger.keys()[1]])["digest"])
    ledger.tags[entry_key(99, "x", "record")] = canonical_json(rival)
    assert any("forks" in p for p in verify(ledger.tags, "2").problems)


def test_a_long_reason_is_kept_whole_and_bound_by_its_digest():
    ledger = Ledger()
    reason = "reviewed the transfer note; " * 800  # 22,400 characters, far past a 5000-character tag
    ledger.operation("a", "approve", "1", reason=reason)
    assert all(len(v) <= 5000 for v in ledger.tags.values())
    assert verify(ledger.tags, "1").ok
    part = next(k for k in ledger.tags if k.startswith("thaw.ledger_text."))
    ledger.tags[part] = ledger.tags[part].replace("transfer", "TRANSFER", 1)
    assert any("reason was edited" in p for p in verify(ledger.tags, "1").problems)


def test_an_intent_without_completion_is_open_and_the_alias_is_not_blamed():
    ledger = promoted_twice()
    ledger.operation("e", "approve", "3", outcome=None)
    report = verify(ledger.tags, "3")  # the alias moved, the completion was never written
    assert report.ok and [o.op for o in report.open_operations] == ["e"]


def test_an_alias_moved_outside_thaw_is_reported():
    report = verify(promoted_twice().tags, "1")
    assert any("moved outside thaw" in p for p in report.problems)


def test_rollbacks_pop_the_history_and_refusals_move_nothing():
    ledger = promoted_twice()
    ledger.operation("e", "approve", "3", outcome="refused")
    ledger.operation("f", "rollback", "1")
    report = verify(ledger.tags, "1")
    assert report.ok and report.champion == "1" and report.champion_history == ("1",)


def test_a_version_citing_a_deleted_entry_is_reported():
    ledger = promoted_twice()
    approval = json.loads(ledger.tags[ledger.keys()[2]])  # v1's approval, as its version tags copy it
    tags = Decision("approved", approval).tags()
    assert verify(ledger.tags, "2", {"1": tags}).ok
    assert any("version 1 cites" in p for p in verify(ledger.tags, "2", {"1": tags | {ENTRY_TAG: "f" * 64}}).problems)


def test_a_tag_that_is_not_an_entry_is_reported():
    ledger = promoted_twice()
    ledger.tags["thaw.ledger.zzz"] = "not json"
    assert any("not a ledger entry" in p for p in verify(ledger.tags, "2").problems)
    # JSON past what the parser reads, in one tag's 8,000 characters: a problem like any other
    for written in ("[" * 4000 + "]" * 4000, '{"digest": ' + "9" * 5000 + "}"):
        ledger.tags["thaw.ledger.zzz"] = written
        assert any("zzz is not a ledger entry" in p for p in verify(ledger.tags, "2").problems)


def test_a_version_that_is_not_a_number_is_reported_and_never_replayed():
    """Entries are tags anyone with MANAGE writes; a replayed version becomes an alias target."""
    ledger = promoted_twice()
    ledger.operation("e", "approve", "../../x")
    report = verify(ledger.tags, "2")
    assert report.champion == "2" and "../../x" not in report.champion_history
    assert any("is not a version number" in p for p in report.problems)
