"""Signed entries against the approvers file: what --verify reports when someone without
the actor's key forges, edits, re-links or re-attributes an entry, or a key acts beyond
what the file allows; and the file itself, refused when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from thaw.errors import UserError
from thaw.ledger import (
    ACKNOWLEDGE,
    GENESIS,
    HEAD_TAG,
    canonical_json,
    completion_fields,
    entry_digest,
    entry_key,
    head_value,
    problem_digest,
    seal,
    verify,
)
from thaw.signing import load_approvers, load_private_key, new_key, public_key_line

PEOPLE = {
    "alice": ["approve", "reject", "rollback", "acknowledge"],
    "bob": ["approve", "force"],
    "worker": ["register"],
}


@pytest.fixture
def team(tmp_path: Path):
    """Keys for alice, bob, the worker and mallory (not in the file), and the file."""
    keys, signers = {}, {}
    for name in (*PEOPLE, "mallory"):
        path = tmp_path / "keys" / name
        public = new_key(path)
        keys[name] = load_private_key(path)
        if name in PEOPLE:
            signers[name] = {"key": public_key_line(public, name), "may": PEOPLE[name]}
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(yaml.safe_dump({"signers": signers}), encoding="utf-8")
    return keys, load_approvers(approvers)


class SignedLedger:
    """Tags as tasks.release.ledger writes them, each entry signed by its actor."""

    def __init__(self, keys) -> None:
        self.keys, self.tags = keys, {}
        self.count, self.head, self.clock = 0, GENESIS, 0

    def write(self, by: str, fields: dict, signer: str | None = None) -> dict:
        self.clock += 1
        body = seal({**fields, "by": by}, self.head, self.keys[signer or by])
        key = entry_key(self.clock, fields["op"], fields["phase"])
        self.tags[key] = canonical_json(body)
        self.count, self.head = self.count + 1, body["digest"]
        self.tags[HEAD_TAG] = head_value(self.count, self.head)
        return {**body, "key": key}

    def operation(self, by: str, op: str, action: str, version: str, **extra) -> dict:
        intent = self.write(by, {"op": op, "phase": "intent", "action": action, "version": version, **extra})
        self.write(by, completion_fields(intent, "applied"))
        return intent

    def entry_keys(self) -> list[str]:
        return sorted(k for k in self.tags if k.startswith("thaw.ledger."))


def _history(keys) -> SignedLedger:
    ledger = SignedLedger(keys)
    ledger.operation("worker", "r1", "register", "1")
    ledger.operation("alice", "a1", "approve", "1")
    ledger.operation("worker", "r2", "register", "2")
    return ledger


def test_a_signed_ledger_verifies_and_says_so(team):
    keys, approvers = team
    report = verify(_history(keys).tags, "1", approvers=approvers, model="m")
    assert report.ok and report.signed and report.champion == "1"
    assert not any("unsigned" in n for n in report.notes)


def test_a_forged_entry_with_the_chain_and_head_recomputed_fails(team):
    """mallory (MANAGE on the model, no listed key) appends an approval "by alice",
    computes its digest and the head anchor: the chain is whole, the signature is not."""
    keys, approvers = team
    ledger = _history(keys)
    forged = {"schema": 1, "op": "f1", "phase": "intent", "action": "approve", "version": "2", "by": "alice"}
    for unsigned in (True, False):
        body = {**forged, "prev": ledger.head}
        if not unsigned:  # signed with mallory's own key, claiming to be alice
            body = seal({k: v for k, v in body.items() if k != "prev"}, ledger.head, keys["mallory"])
        else:
            body["digest"] = entry_digest(body)
        tags = dict(ledger.tags)
        tags[entry_key(99, "f1", "intent")] = canonical_json(body)
        tags[HEAD_TAG] = head_value(ledger.count + 1, body["digest"])
        problems = verify(tags, "1", approvers=approvers, model="m").problems
        assert any(("unsigned" if unsigned else "not in") in p for p in problems), problems


def test_an_edited_or_relinked_entry_fails_its_signature(team):
    keys, approvers = team
    ledger = _history(keys)
    first, second, third = ledger.entry_keys()[:3]
    # an edit with the digest recomputed
    body = json.loads(ledger.tags[first])
    body["version"] = "9"
    body["digest"] = entry_digest(body)
    tags = {**ledger.tags, first: canonical_json(body)}
    assert any("signature by worker does not match" in p for p in verify(tags, "1", approvers=approvers).problems)
    # the second entry removed, the third re-linked to the first with its digest recomputed
    body = json.loads(ledger.tags[third])
    body["prev"] = json.loads(ledger.tags[first])["digest"]
    body["digest"] = entry_digest(body)
    tags = {k: v for k, v in ledger.tags.items() if k not in (second, third)} | {third: canonical_json(body)}
    problems = verify(tags, "1", approvers=approvers).problems
    assert any("re-linked around a removed entry" in p for p in problems), problems


def test_a_by_that_is_not_the_key_and_an_action_the_key_may_not_take(team):
    keys, approvers = team
    ledger = _history(keys)
    ledger.write("alice", {"op": "x1", "phase": "intent", "action": "approve", "version": "2"}, signer="bob")
    ledger.write("worker", {"op": "x2", "phase": "intent", "action": "approve", "version": "2"})
    ledger.write("alice", {"op": "x3", "phase": "intent", "action": "approve", "version": "2", "force": True})
    problems = verify(ledger.tags, None, approvers=approvers).problems
    assert any("says it is by 'alice' but is signed by bob's key" in p for p in problems)
    assert any("worker's key may not approve" in p for p in problems)
    assert any("alice's key may not force" in p for p in problems)


def test_notes_need_any_listed_key_and_cosign_needs_force(team):
    keys, approvers = team
    ledger = _history(keys)
    ledger.write("worker", {"op": "n1", "phase": "record", "action": "request", "version": "2"})
    ledger.write("bob", {"op": "n2", "phase": "record", "action": "cosign", "version": "2"})
    assert verify(ledger.tags, "1", approvers=approvers).ok
    ledger.write("alice", {"op": "n3", "phase": "record", "action": "cosign", "version": "2"})
    assert any("alice's key may not force" in p for p in verify(ledger.tags, "1", approvers=approvers).problems)


def test_an_acknowledgement_turns_problems_into_notes_and_adopts_the_champion(team):
    keys, approvers = team
    ledger = _history(keys)
    moved = verify(ledger.tags, "2", approvers=approvers)  # the alias moved in the MLflow UI
    assert len(moved.problems) == 1 and "moved outside thaw" in moved.problems[0]
    ack = {"op": "k1", "phase": "record", "action": ACKNOWLEDGE, "champion": "2"}
    ledger.write("alice", {**ack, "acknowledged": [problem_digest(p) for p in moved.problems]})
    report = verify(ledger.tags, "2", approvers=approvers)
    assert report.ok and report.champion == "2" and report.entries[-1]["action"] == ACKNOWLEDGE
    # an edit cannot be undone by adopting anything: acknowledged, it stays in the report as a note
    first = ledger.entry_keys()[0]
    body = json.loads(ledger.tags[first]) | {"version": "9"}
    ledger.tags[first] = canonical_json(body)
    edited = verify(ledger.tags, "2", approvers=approvers).problems
    assert len(edited) == 1 and "was edited" in edited[0]
    ledger.write("alice", {**ack, "op": "k2", "acknowledged": [problem_digest(p) for p in edited]})
    report = verify(ledger.tags, "2", approvers=approvers)
    assert report.ok and sum(n.startswith("acknowledged by alice") for n in report.notes) == 1


def test_unsigned_history_is_adopted_only_up_to_the_entry_the_file_names(team, tmp_path):
    keys, approvers = team
    ledger = SignedLedger(keys)
    old = seal({"op": "o", "phase": "record", "action": "note", "by": "ana"}, GENESIS)
    ledger.tags[entry_key(0, "o", "record")] = canonical_json(old)
    ledger.count, ledger.head = 1, old["digest"]
    ledger.operation("worker", "r1", "register", "1")
    assert any("unsigned" in p for p in verify(ledger.tags, None, approvers=approvers, model="m").problems)
    data = yaml.safe_load(approvers.path.read_text()) | {"unsigned_history": {"m": old["digest"]}}
    approvers.path.write_text(yaml.safe_dump(data))
    assert verify(ledger.tags, None, approvers=load_approvers(approvers.path), model="m").ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("signers: [a, b]", "'signers' must map"),
        ("signers:\n  alice: {key: 'ssh-rsa AAAA', may: [approve]}", "not an OpenSSH ed25519"),
        ("signers:\n  alice: {key: 'ssh-ed25519 !!!', may: [approve]}", "not valid base64"),
        ("signers:\n  'al ice': {key: x, may: [approve]}", "a name is letters"),
        ('signers:\n  "alice\\n": {key: x, may: [approve]}', "a name is letters"),  # "$" would allow it
        ("signers:\n  alice: {key: x, may: [deploy]}", "'may' lists some of"),
        ("signers: {}\nsigners: {}", "appears twice"),
        ("extra: 1", "expected the fields"),
    ],
)
def test_a_malformed_approvers_file_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "approvers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_approvers(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_key_others_can_read_is_refused_and_keys_are_never_overwritten(tmp_path):
    path = tmp_path / "k"
    new_key(path)
    with pytest.raises(UserError, match="never overwritten"):
        new_key(path)
    path.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        load_private_key(path)


def test_the_prefect_form_cannot_force():
    """Nobody who answers the form is authenticated: forcing is `thaw approve --force` only."""
    from pydantic import ValidationError

    from tasks.release.approval_form import ApprovalForm

    answer = {"reason": "ship it anyway", "approver": "mallory"}
    with pytest.raises(ValidationError):
        ApprovalForm.model_validate({"decision": "force", **answer})
    assert ApprovalForm.model_validate({"decision": "approve", **answer}).decision == "approve"


def test_a_forged_open_intent_neither_hides_a_moved_alias_nor_moves_the_champion(team):
    """An intent without a completion pauses the alias check (its process may have died
    mid-way); one nobody listed signed must not, and a forged applied approval replays nothing."""
    keys, approvers = team
    ledger = _history(keys)
    ledger.write("alice", {"op": "z1", "phase": "intent", "action": "approve", "version": "2"}, signer="mallory")
    report = verify(ledger.tags, "2", approvers=approvers)  # the alias moved to v2 in the UI
    assert not report.open_operations and report.champion == "1"
    assert any("moved outside thaw" in p for p in report.problems)
