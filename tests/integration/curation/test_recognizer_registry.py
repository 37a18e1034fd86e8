"""A PII recognizer added the way a user would add one: a class registered in their own
module, no edit to thaw. Curation runs it, scrubs what it finds, counts it in the report,
and leaves it out when the config disables it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import regex

from thaw.config import DEFAULT_PII_ENTITIES, ThawConfig
from thaw.pii.recognizers import Recognizer, recognizer_names, register_recognizer, unregister_recognizer
from thaw.pii.spans import Span

pytestmark = pytest.mark.integration

EMPLOYEE_ID = regex.compile(r"\bEMP-\d{6}\b")
HINTS_ASKED: list[str] = []


class EmployeeIds(Recognizer):
    name = "employee_ids"
    entities = frozenset({"EMPLOYEE_ID"})

    def hint(self, text: str) -> bool:
        HINTS_ASKED.append(text)
        return "EMP-" in text

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return [Span(m.start(), m.end(), "EMPLOYEE_ID") for m in EMPLOYEE_ID.finditer(text)]


@pytest.fixture
def employee_ids():
    register_recognizer(EmployeeIds)
    HINTS_ASKED.clear()
    try:
        yield EmployeeIds
    finally:
        unregister_recognizer(EmployeeIds.name)


def _workspace(workspace: Path, **pii) -> ThawConfig:
    intents = {"refund": "money back please", "password": "cannot log in", "delivery": "where is my parcel"}
    rows = [
        {"id": f"r{i}", "text": f"{words} ({i}), staff id EMP-{100000 + i}" if i % 3 == 0 else f"{words} number {i}"}
        | {"label": label}
        for i, (label, words) in enumerate(list(intents.items()) * 20)
    ]
    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return ThawConfig.model_validate(
        {
            "workspace": str(workspace),
            "data": {"train": str(path)},
            "curation": {"pii": {"entities": [*DEFAULT_PII_ENTITIES, "EMPLOYEE_ID"], **pii}},
        }
    )


def _curated_text(curated) -> str:
    return "\n".join(pd.read_csv(p)["text"].str.cat(sep="\n") for p in curated.files.values())


def test_a_registered_recognizer_is_run_scrubs_and_is_counted(workspace, employee_ids, monkeypatch):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
    assert recognizer_names()[-3:] == ("employee_ids", "postcodes_after_places", "name_echoes_after_ner")
    cfg = _workspace(workspace)
    curated = curate_dataset.fn(cfg, workspace / "run")
    text = _curated_text(curated)
    assert "EMP-" not in text and "<EMPLOYEE_ID_" in text
    assert HINTS_ASKED  # its cheap hint was asked first
    report = json.loads(curated.report_path.read_text(encoding="utf-8"))
    assert report["pii"]["entities"]["EMPLOYEE_ID"] == 20


def test_a_disabled_recognizer_does_not_run(workspace, employee_ids, monkeypatch):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
    cfg = _workspace(workspace, disabled_recognizers=["employee_ids"])
    curated = curate_dataset.fn(cfg, workspace / "run")
    assert "EMP-100000" in _curated_text(curated) and not HINTS_ASKED


def test_disabling_an_unknown_recognizer_is_refused_with_the_registered_names():
    from thaw.config import PiiConfig
    from thaw.errors import UserError
    from thaw.pii.recognizers import enabled_recognizers

    with pytest.raises(UserError, match="unknown recognizer 'nope'; registered: presidio_patterns, structured"):
        enabled_recognizers(PiiConfig(disabled_recognizers=("nope",)))
