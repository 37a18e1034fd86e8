"""Retraining as a team does it: new training rows, the same test file, a second run in
the same workspace. Curation writes the second run's splits to a directory of its own,
its test split byte for byte the first run's; the second version's lineage must still
read back its own paths. Before dataset inputs were named per place (MLflow hands a run
that logs a known name and digest the first run's source), the second version's test
path tag read as edited, and its promotion was refused."""

from __future__ import annotations

import pytest

from tests.projects import ticket_project
from thaw.config import ThawConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_a_second_run_on_the_same_test_file_keeps_its_own_lineage(
    workspace, tiny_encoder, prefect_harness, monkeypatch
):
    from flows.pipeline import thaw_pipeline
    from tasks.release.lineage import describe_lineage

    monkeypatch.setenv("THAW_PII_SECRET", "the team's key")  # as a scheduled team sets it: pseudonyms repeat

    settings = ticket_project(workspace, tiny_encoder, "tickets", 500, 5)
    tickets = workspace / "data" / "tickets.csv"
    header, *rows = tickets.read_text(encoding="utf-8").splitlines(keepends=True)
    test_file = workspace / "data" / "test.csv"
    test_file.write_text(header + "".join(rows[400:]), encoding="utf-8")
    tickets.write_text(header + "".join(rows[:400]), encoding="utf-8")
    settings["data"]["test"] = str(test_file)
    cfg = ThawConfig.model_validate(settings)
    thaw_pipeline(cfg)
    # the next training file: the same rows in another order, so the test rows curation
    # keeps (those no training row repeats) are the same
    tickets.write_text(header + "".join(reversed(rows[:400])), encoding="utf-8")
    thaw_pipeline(cfg)

    first, second = (describe_lineage(cfg, f"tickets/{v}") for v in ("1", "2"))
    test_1, test_2 = first["data"]["curated"]["test"], second["data"]["curated"]["test"]
    assert test_1["md5"] == test_2["md5"] and test_1["path"] != test_2["path"]  # the case in question
    assert second["tag_problems"] == [] and first["tag_problems"] == []
    logged = {d["context"]: d["source"]["path"] for d in second["data"]["mlflow_dataset_inputs"]}
    assert logged["curated-test"] == test_2["path"]
