"""`thaw monitor`: no alarm on more of the training distribution, an alarm and a training
run on shifted data, against exactly the rows the model version learned from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.projects import pipeline_config
from thaw.demo_data import generate_support_tickets

pytestmark = pytest.mark.integration

LOANS = [
    "Ich möchte einen Kredit über {n} Euro beantragen, wie lange dauert die Prüfung?",
    "Wie hoch sind die Zinsen für ein Darlehen von {n} Euro über fünf Jahre?",
    "Können Sie meine Hypothek um {n} Euro aufstocken und die Laufzeit verlängern?",
    "Bitte schicken Sie mir ein Angebot für einen Ratenkredit mit {n} Euro Tilgung.",
]


def _tickets(rows: int, seed: int, prefix: str) -> pd.DataFrame:
    frame = pd.read_csv(
        io.StringIO(generate_support_tickets(rows=rows, seed=seed)[0]), dtype=str, keep_default_na=False
    )
    frame = frame[(frame["message"].str.strip() != "") & (frame["intent"].str.strip() != "")].copy()
    frame["ticket_id"] = prefix + frame["ticket_id"]
    return frame


def _write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder, prefect_harness):
    from flows.pipeline import thaw_pipeline

    workspace = tmp_path_factory.mktemp("monitor") / "project"
    workspace.mkdir()
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    path.write_text(generate_support_tickets(rows=400, seed=6)[0], encoding="utf-8")
    cfg = pipeline_config(workspace, tiny_encoder, path)
    cfg = cfg.model_copy(
        update={
            "training": cfg.training.model_copy(
                update={"ladder": cfg.training.ladder.model_copy(update={"rungs": ("frozen",)})}
            )
        }
    )
    thaw_pipeline(cfg)
    return cfg


def _monitor(cfg, arrivals: str, label: str | None = "intent", deployment: str | None = None) -> dict:
    from flows.monitoring import thaw_monitor

    report = thaw_monitor(
        cfg,
        model="tickets@challenger",
        arrivals_file=arrivals,
        text_column="message",
        label_column=label,
        id_column="ticket_id",
        retrain_deployment=deployment,
    )
    return json.loads(Path(report).read_text(encoding="utf-8"))


def test_more_of_the_same_distribution_raises_no_alarm(trained, tmp_path):
    report = _monitor(trained, _write(_tickets(300, seed=77, prefix="new-"), tmp_path / "same.csv"))
    assert not report["drifted"], report["fired"]
    assert report["label_shift"]["unknown_labels"] == []
    assert report["accuracy"]["interval"][0] <= report["accuracy"]["new"] <= report["accuracy"]["interval"][1]
    assert (Path(report["arrivals"]["file"]).parent / "same.csv").is_file()
    assert "retraining" not in report


def test_a_new_intent_in_another_register_fires_and_starts_training_on_the_combined_data(trained, tmp_path):
    from prefect import get_client

    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    thaw_pipeline.to_deployment(name="retrain", parameters={"cfg": trained.model_dump(mode="json")}).apply()
    same = _tickets(200, seed=78, prefix="new-")
    loans = pd.DataFrame(
        {
            "ticket_id": [f"loan-{i}" for i in range(80)],
            "message": [LOANS[i % len(LOANS)].format(n=1000 + 250 * i) for i in range(80)],
            "intent": "loans",
        }
    )
    shifted = pd.concat([same[["ticket_id", "message", "intent"]], loans], ignore_index=True)
    report = _monitor(trained, _write(shifted, tmp_path / "shifted.csv"), deployment="thaw-pipeline/retrain")
    fired = " | ".join(report["fired"])
    assert report["drifted"] and "never saw: loans" in fired and "text distribution" in fired, fired
    assert "label shift:" in fired  # 80 of 264 arrivals carry a label no training row has
    retrain = report["retraining"]
    combined = pd.read_csv(retrain["file"], dtype=str, keep_default_na=False)
    assert list(combined.columns) == ["ticket_id", "message", "intent"]  # the user's names, ready for `thaw run`
    assert (combined["intent"] == "loans").sum() == 80 and retrain["rows"] == len(combined)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(retrain["flow_run_id"])
    assert run.parameters["cfg"]["data"]["train"] == retrain["file"]
    assert run.parameters["cfg"]["data"]["validation"] is None
    client = client_for(trained)
    experiment = client.get_experiment_by_name("thaw-monitor")
    runs = client.search_runs([experiment.experiment_id], "tags.`thaw.monitor.drifted` = 'true'")
    assert runs and runs[0].data.tags["thaw.monitor.retrain_flow_run_id"] == retrain["flow_run_id"]
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"drift.json", "drift.md", "drift.png"} <= names


def test_unlabelled_text_in_another_register_fires_without_retraining(trained, tmp_path):
    frame = pd.DataFrame(
        {"ticket_id": [f"u-{i}" for i in range(60)], "message": [LOANS[i % 4].format(n=i * 10) for i in range(60)]}
    )
    report = _monitor(trained, _write(frame, tmp_path / "unlabelled.csv"), label=None)
    assert report["drifted"] and report["label_shift"] is None and report["accuracy"] is None
    assert "retraining" not in report
    assert "unseen vocabulary" in " | ".join(report["fired"])


def test_a_backbone_source_tag_edited_in_the_registry_is_refused_before_anything_loads(trained, tmp_path):
    # registry tags are editable by anyone with access to the registry: the reference's
    # backbone source must be one this configuration allows, or nothing is imported or read
    import sys

    from tasks.tracking.client import client_for
    from thaw.errors import UserError

    client = client_for(trained)
    version = client.get_model_version_by_alias("tickets", "challenger")
    recorded = version.tags["thaw.backbone.source"]
    sys.modules.pop("this", None)
    client.set_model_version_tag("tickets", version.version, "thaw.backbone.source", "package:this")
    try:
        with pytest.raises(UserError, match="thaw.backbone.source 'package:this' is not a backbone"):
            _monitor(trained, _write(_tickets(40, seed=79, prefix="new-"), tmp_path / "arrivals.csv"))
    finally:
        client.set_model_version_tag("tickets", version.version, "thaw.backbone.source", recorded)
    assert "this" not in sys.modules


def test_an_approved_accuracy_edited_in_the_registry_is_refused_before_anything_restores(trained, tmp_path):
    # set to 0 the tag would silence the labelled accuracy alarm: it must say what the
    # run logged as the registered model's test accuracy, which MLflow never rewrites
    from tasks.tracking.client import client_for
    from thaw.errors import UserError

    client = client_for(trained)
    version = client.get_model_version_by_alias("tickets", "challenger")
    recorded = version.tags["thaw.test_accuracy"]
    client.set_model_version_tag("tickets", version.version, "thaw.test_accuracy", "0.0")
    try:
        with pytest.raises(UserError, match=rf"thaw.test_accuracy reads 0.0000, but its run logged {recorded}: "):
            _monitor(trained, _write(_tickets(40, seed=83, prefix="new-"), tmp_path / "arrivals.csv"))
    finally:
        client.set_model_version_tag("tickets", version.version, "thaw.test_accuracy", recorded)


def test_a_class_the_reference_sample_left_out_is_not_a_label_the_champion_never_saw(trained, tmp_path):
    """The monitor embeds a seeded sample of the champion's training rows
    (``monitoring.max_reference_rows``), and read the labels from that sample too: a class
    the sample happened to leave out fired 'labels the champion never saw' on arrivals of
    the training distribution. On a large training set a rare class is often left out
    (one of 20 rows in 50,000, sampled to 2,000: left out 44% of the time). The labels
    never seen are now against every training row's; the rows compared stay sampled. With seed 16 the sample
    of 50 rows of this champion's left out card_lost, which fired before."""
    monitoring = trained.monitoring.model_copy(update={"max_reference_rows": 50, "seed": 16})
    cfg = trained.model_copy(update={"monitoring": monitoring})
    report = _monitor(cfg, _write(_tickets(300, seed=77, prefix="new-"), tmp_path / "same.csv"))
    assert report["label_shift"]["unknown_labels"] == []
    assert not any("never saw" in line for line in report["fired"]), report["fired"]
    assert report["rows_compared"]["reference"] == 50
    assert report["label_shift"]["known_label_rows"] > 200  # every training row's label, not the sample's


def test_thaw_monitor_through_the_cli_shows_a_new_label_as_text_not_terminal_codes(trained, tmp_path):
    """As a user runs it: ``thaw monitor`` in the workspace, with a config file. The new
    label arrives with an escape sequence and a carriage return in it (what a hostile or
    careless file can carry): the alarm names it, and stdout shows the escape sequence as
    text, so the line cannot be erased or rewritten on the terminal."""
    import csv
    import subprocess
    import sys

    import yaml

    config = tmp_path / "thaw.yaml"
    config.write_text(yaml.safe_dump(trained.model_dump(mode="json", exclude_defaults=True)), encoding="utf-8")
    label = "loans\x1b[2K\rno drift"
    messages = [LOANS[i % len(LOANS)].format(n=500 + 7 * i) for i in range(30)]
    loans = pd.DataFrame({"message": messages, "intent": label})
    arrivals = pd.concat([_tickets(150, seed=79, prefix="cli-")[["message", "intent"]], loans])
    arrivals.insert(0, "ticket_id", [f"a{i}" for i in range(len(arrivals))])
    arrivals_file = str(tmp_path / "arrivals.csv")
    arrivals.to_csv(arrivals_file, index=False, quoting=csv.QUOTE_ALL)  # a bare \r would end the row
    proc = subprocess.run(
        [sys.executable, "-m", "thaw_cli", "monitor", "tickets@challenger", "--input", arrivals_file,
         "--text-column", "message", "--label-column", "intent", "--id-column", "ticket_id", "--config", str(config)],
        cwd=trained.root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.startswith("DRIFT: ") for line in lines), proc.stdout
    # the carriage return is whitespace, which a label's one spelling reads as a space
    assert "  - labels the champion never saw: loans\\x1b[2K no drift" in lines, proc.stdout
