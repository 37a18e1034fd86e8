"""A version's approval is what the ledger records; its ``thaw.approval*`` tags are a copy
anyone with MANAGE can edit. What ``verify`` reports for each way of editing them, and
what it leaves alone (a refusal, an interrupted operation, a version never decided)."""

from __future__ import annotations

import pytest

from tests.unit.release.test_ledger import Ledger
from thaw.approval_record import APPROVAL_TAG, ENTRY_TAG, Decision, decisions, tag_problems
from thaw.ledger import completion_fields, verify


def _registry() -> tuple[Ledger, dict[str, dict[str, str]]]:
    """v1 approved (champion), v2 rejected, v3 refused at the gate, v4 registered: the
    ledger and each version's tags as thaw writes them."""
    ledger = Ledger()
    ledger.operation("a", "register", "1")
    approved = ledger.operation("b", "approve", "1", reason="beats nothing: the first champion")
    ledger.operation("c", "register", "2")
    rejected = ledger.operation("d", "reject", "2", reason="labels look swapped")
    ledger.operation("e", "register", "3")
    ledger.operation("f", "approve", "3", outcome="refused")
    ledger.operation("g", "register", "4")
    tags = {
        "1": Decision("approved", approved).tags(),
        "2": Decision("rejected", rejected).tags(),
        "3": {APPROVAL_TAG: "pending"},
        "4": {APPROVAL_TAG: "pending"},
    }
    return ledger, tags


def test_tags_as_thaw_writes_them_verify_and_the_ledger_says_each_version_s_state():
    ledger, tags = _registry()
    report = verify(ledger.tags, "1", tags, challenger_alias="4")
    assert report.ok, report.problems
    states = {v: report.decision(v).state for v in "1234"}
    assert states == {"1": "approved", "2": "rejected", "3": "pending", "4": "pending"}
    assert report.decision("9") is None
    assert tags["1"]["thaw.approval.forced"] == "false" and "thaw.approval.forced" not in tags["2"]


@pytest.mark.parametrize(
    ("version", "edit", "expected"),
    [
        (
            "4",
            {APPROVAL_TAG: "approved", "thaw.approval.by": "cto"},
            "version 4 is tagged thaw.approval='approved', but the ledger leaves it pending",
        ),
        (
            "3",
            {APPROVAL_TAG: "approved"},
            "version 3 is tagged thaw.approval='approved', but the ledger leaves it pending",
        ),
        (
            "2",
            {APPROVAL_TAG: "pending"},
            "version 2 is tagged thaw.approval='pending', but the ledger leaves it rejected",
        ),
        (
            "1",
            {APPROVAL_TAG: "rejected"},
            "version 1 is tagged thaw.approval='rejected', but the ledger leaves it approved",
        ),
        (
            "1",
            {"thaw.approval.by": "cto"},
            "version 1's tag thaw.approval.by reads 'cto', but the ledger entry that approved it",
        ),
        ("2", {"thaw.approval.reason": "fine\nreally"}, "version 2's tag thaw.approval.reason reads 'fine\\nreally'"),
        ("1", {"thaw.approval.forced": "true"}, "version 1's tag thaw.approval.forced reads 'true'"),
    ],
)
def test_an_approval_tag_edited_outside_thaw_is_a_problem(version, edit, expected):
    ledger, tags = _registry()
    tags[version] = tags[version] | edit
    problems = verify(ledger.tags, "1", tags, challenger_alias="4").problems
    assert any(p.startswith(expected) for p in problems), problems


def test_a_version_citing_another_version_s_approval_is_a_problem():
    """v4 tagged with a copy of v1's approval tags: the entry it cites is in the ledger,
    but it decided v1."""
    ledger, tags = _registry()
    tags["4"] = dict(tags["1"])
    problems = verify(ledger.tags, "1", tags, challenger_alias="4").problems
    assert problems == ("version 4 is tagged thaw.approval='approved', but the ledger leaves it pending: "
                        "the tag was written outside thaw",)  # fmt: skip


def test_a_removed_state_tag_reads_pending_so_only_a_decided_version_misses_it():
    ledger, tags = _registry()
    tags["4"], tags["3"] = {}, {}
    assert verify(ledger.tags, "1", tags, challenger_alias="4").ok
    del tags["2"][APPROVAL_TAG]
    assert (
        verify(ledger.tags, "1", tags, challenger_alias="4")
        .problems[0]
        .startswith("version 2 is tagged thaw.approval='pending', but the ledger leaves it rejected")
    )


def test_an_interrupted_decision_leaves_half_written_tags_to_the_open_operation():
    """A crash between the intent and the completion (the tags part written): the open
    operation is what the report says, and the next operation completes it."""
    ledger, tags = _registry()
    intent = ledger.operation("h", "approve", "4", outcome=None)
    tags["4"] = {APPROVAL_TAG: "approved", ENTRY_TAG: intent["digest"]}
    report = verify(ledger.tags, "1", tags, challenger_alias="4")
    assert report.ok and [o.op for o in report.open_operations] == ["h"]
    assert report.decision("4").state == "pending"
    ledger.write(completion_fields(intent, "applied", champion_after="4"))
    report = verify(ledger.tags, "4", tags)
    assert report.decision("4").state == "approved"
    assert any("thaw.approval.by reads nothing" in p for p in report.problems)  # the rest was never written


def test_the_last_applied_decision_stands_and_a_re_registration_reads_pending():
    ledger, _ = _registry()
    assert decisions(verify(ledger.tags, "1").entries)["2"].state == "rejected"
    ledger.operation("i", "register", "2")
    report = verify(ledger.tags, "1", {"2": {APPROVAL_TAG: "pending"}}, challenger_alias="2")
    assert report.ok and report.decision("2") == Decision("pending")


def test_a_long_value_is_quoted_short():
    problems = tag_problems("7", {APPROVAL_TAG: "approved" + "x" * 100_000}, None)
    assert len(problems) == 1 and len(problems[0]) < 250 and "..." in problems[0]


def test_a_challenger_alias_moved_outside_thaw_is_a_problem_and_a_decision_takes_it_off():
    """A registration makes a version challenger; its approval or rejection takes the alias
    off. Put back on a rejected version (or moved at all) outside thaw, it is reported."""
    ledger, tags = _registry()
    assert verify(ledger.tags, "1", tags, challenger_alias="2").problems == (
        "the challenger alias is on v2 but the ledger leaves v4: the alias was moved outside thaw",
    )
    assert not verify(ledger.tags, "1", tags, challenger_alias=None).ok
    ledger.operation("h", "reject", "4")
    tags["4"] = Decision("rejected", verify(ledger.tags, "1").entries[-2]).tags()
    assert verify(ledger.tags, "1", tags, challenger_alias=None).ok
    assert verify(ledger.tags, "1").ok  # versions not read: neither their tags nor the challenger are checked


def test_the_ledger_backs_the_aliases_it_replays_or_an_open_operation_was_moving_and_nothing_unverified():
    """What `thaw serve` follows: an alias the replay puts there, or one an interrupted
    operation was moving (the next operation completes it); nothing while it does not verify."""
    ledger, tags = _registry()
    report = verify(ledger.tags, "1", tags, challenger_alias="4")
    assert report.backs("champion", "1") and report.backs("challenger", "4")
    assert not report.backs("champion", "4") and not report.backs("challenger", "2")
    moved = verify(ledger.tags, "3", tags, challenger_alias="4")  # the champion alias moved in the UI
    assert not moved.ok and not moved.backs("champion", "3") and not moved.backs("champion", "1")
    intent = ledger.operation("h", "approve", "4", outcome=None)
    report = verify(ledger.tags, "4", tags | {"4": {APPROVAL_TAG: "approved", ENTRY_TAG: intent["digest"]}})
    assert report.backs("champion", "4") and report.backs("champion", "1") and not report.backs("champion", "3")


def test_an_acknowledgement_adopts_the_challenger_alias_as_it_stood():
    """An approver who acknowledges a moved challenger alias adopts it, as for the
    champion: the ledger then backs it. One written before acknowledgements named a
    challenger changes nothing."""
    from thaw.ledger import ACKNOWLEDGE, problem_digest

    ledger, tags = _registry()
    moved = verify(ledger.tags, "1", tags, challenger_alias="2")
    record = {"op": "k", "phase": "record", "action": ACKNOWLEDGE, "champion": "1"}
    ledger.write(record | {"acknowledged": [problem_digest(p) for p in moved.problems]})
    assert not verify(ledger.tags, "1", tags, challenger_alias="2").backs("challenger", "2")
    ledger.write(record | {"op": "m", "acknowledged": [], "challenger": "2"})
    report = verify(ledger.tags, "1", tags, challenger_alias="2")
    assert report.ok and report.backs("challenger", "2") and report.challenger == "2"
