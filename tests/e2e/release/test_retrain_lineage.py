"""Retraining as a team does it, through the CLI: `thaw run`, `thaw approve`, then new
training rows with the same test file, `thaw run` again in the same workspace and `thaw
approve` of the second version. Curation writes the second run's splits to a directory
of its own, its test split byte for byte the first run's; the second version's lineage
must still read back its own paths. Before dataset inputs were named per place (MLflow
hands a run that logs a known name and digest the first run's source), the second
version's test path tag read as edited, and its promotion was refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.projects import ticket_project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "THAW_PII_SECRET": "the team's 16-byte key"}  # as a scheduled team sets it: pseudonyms repeat
    return subprocess.run(
        [sys.executable, "-m", "thaw_cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


def _thaw(*args: str) -> str:
    proc = _run(*args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_a_second_run_on_the_same_test_file_keeps_its_own_lineage(workspace, tiny_encoder):
    settings = ticket_project(workspace, tiny_encoder, "tickets", 500, 5)
    tickets = workspace / "data" / "tickets.csv"
    header, *rows = tickets.read_text(encoding="utf-8").splitlines(keepends=True)
    test_file = workspace / "data" / "test.csv"
    test_file.write_text(header + "".join(rows[400:]), encoding="utf-8")
    tickets.write_text(header + "".join(rows[:400]), encoding="utf-8")
    settings["data"]["test"] = str(test_file)
    config = workspace / "thaw.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    _thaw("run", "--config", str(config))
    _thaw("approve", "tickets", "1", "--config", str(config), "--reason", "first model")
    # the next training file: the same rows in another order, so the test rows curation
    # keeps (those no training row repeats) are the same
    tickets.write_text(header + "".join(reversed(rows[:400])), encoding="utf-8")
    _thaw("run", "--config", str(config))

    first, second = (
        json.loads(_thaw("lineage", f"tickets/{v}", "--json", "--config", str(config))) for v in ("1", "2")
    )
    test_1, test_2 = first["data"]["curated"]["test"], second["data"]["curated"]["test"]
    assert test_1["md5"] == test_2["md5"] and test_1["path"] != test_2["path"]  # the case in question
    assert second["tag_problems"] == [] and first["tag_problems"] == []
    logged = {d["context"]: d["source"]["path"] for d in second["data"]["mlflow_dataset_inputs"]}
    assert logged["curated-test"] == test_2["path"]
    # where the bug showed: the second version's promotion, whose gate re-reads its lineage.
    # The same rows reordered need not beat the champion, so the gate may refuse it on its
    # figures; it must not refuse its lineage
    approval = _run("approve", "tickets", "2", "--config", str(config), "--reason", "retrained on the new rows")
    said = approval.stdout + approval.stderr
    assert approval.returncode == 0 or "does not beat champion" in said, said[-3000:]
    assert "the tag was edited" not in said and "lineage" not in said.lower(), said[-3000:]
