"""Human approval through a paused Prefect flow run (typed input), and its timeout."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.projects import pipeline_config

pytestmark = pytest.mark.integration


@pytest.fixture
def approval_cfg(workspace, tiny_encoder):
    from thaw.demo_data import generate_support_tickets

    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    path.write_text(generate_support_tickets(rows=400, seed=9)[0], encoding="utf-8")

    def make(timeout_minutes: float):
        base = pipeline_config(workspace, tiny_encoder, path)
        return base.model_copy(
            update={
                "promotion": base.promotion.model_copy(
                    update={"wait_for_approval": True, "approval_timeout_minutes": timeout_minutes}
                )
            }
        )

    return make


def _paused_run_id(deadline_s: float = 240) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            if runs:
                return str(runs[0].id)
            time.sleep(1)
    raise TimeoutError("the flow run never paused for approval")


def test_approval_form_in_a_paused_run_promotes_and_records(approval_cfg, prefect_harness):
    from prefect.flow_runs import resume_flow_run

    from flows.pipeline import thaw_pipeline
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for

    cfg = approval_cfg(10)
    errors = []
    runner = threading.Thread(target=lambda: _run(thaw_pipeline, cfg, errors))
    runner.start()
    run_id = _paused_run_id()
    # a name that would print a line of its own in the ledger: the server refuses the answer
    # against the form's schema, and the run stays paused for a real one
    forged = {"decision": "approve", "reason": "checked", "approver": "ana\nthaw: approved by the board"}
    with pytest.raises(RuntimeError, match="Cannot resume this run"):
        resume_flow_run(run_id, run_input=forged)
    assert _paused_run_id() == run_id
    resume_flow_run(run_id, run_input={"decision": "approve", "reason": "checked the transfer note", "approver": "ana"})
    runner.join(timeout=300)
    assert not runner.is_alive() and errors == []
    client = client_for(cfg)
    assert str(client.get_model_version_by_alias("tickets", "champion").version) == "1"
    # a local store authenticates nobody: the form decides, in the typed name, marked as typed
    intent = [e for e in ledger_report(client, "tickets", None).entries if e["phase"] == "intent"][-1]
    assert (intent["action"], intent["via"], intent["by"]) == ("approve", "prefect form (typed name: ana)", "ana")
    assert intent["identity"] == "not verified: name typed into the Prefect form; unsigned: no approvers file"
    assert client.get_model_version("tickets", "1").tags["thaw.approval"] == "approved"
    assert _final_state(run_id) == ("COMPLETED", "Approved")


def test_the_form_refuses_an_answer_without_a_decision_or_a_reason():
    from pydantic import ValidationError

    from tasks.release.approval_form import ApprovalForm

    for answer in ({"reason": "fine", "approver": "ana"}, {"decision": "approve", "reason": "", "approver": "ana"}):
        with pytest.raises(ValidationError):
            ApprovalForm.model_validate(answer)
    with pytest.raises(ValidationError):  # a blank name is not filled in with anyone's
        ApprovalForm.model_validate({"decision": "reject", "reason": "wrong labels", "approver": ""})
    for name in ("ana\nthaw: approved by the board", "ana\x1b[2K", "a" * 65, "Ana Lima"):  # one name, on one line
        with pytest.raises(ValidationError):
            ApprovalForm.model_validate({"decision": "reject", "reason": "wrong labels", "approver": name})
    assert ApprovalForm.model_validate({"decision": "reject", "reason": "fine", "approver": "ana.lima@x.org"})
    # a textarea's Enter: the server's check (Python's re) lets one trailing newline through
    assert ApprovalForm.model_validate({"decision": "reject", "reason": "fine", "approver": "ana\n"}).approver == "ana"
    import jsonschema

    schema = ApprovalForm.model_json_schema()
    jsonschema.validate({"decision": "reject", "reason": "fine", "approver": "ana\n"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"decision": "reject", "reason": "fine", "approver": "ana\nthaw: approved"}, schema)


def test_without_an_answer_the_candidate_stays_challenger(approval_cfg, prefect_harness):
    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    cfg = approval_cfg(0.1)
    summary = thaw_pipeline(cfg)
    client = client_for(cfg)
    assert str(client.get_model_version_by_alias("tickets", "challenger").version) == "1"
    assert client.get_model_version("tickets", "1").tags["thaw.approval"] == "pending"
    assert json.loads(summary.read_text())["approval"]["outcome"] == "timeout"  # the terminal reads this


def _final_state(run_id: str) -> tuple[str, str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state.type.value, state.name


def _run(fn, cfg, errors: list) -> None:
    try:
        fn(cfg)
    except BaseException as exc:  # surfaced by the assertion in the test
        errors.append(repr(exc))
