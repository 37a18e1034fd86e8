"""Dataset inputs against a real MLflow store: each run reads back where its own splits
were versioned. MLflow keeps one dataset per experiment, name and digest, and gives a run
that logs the same name and digest the source logged first; retraining on new training
rows with the test file of the last run curates the same test bytes into a new
directory, and that run's version read back the last run's path ("the tag was edited"),
so its promotion was refused."""

from __future__ import annotations

from pathlib import Path

from tasks.tracking.client import client_for, ensure_experiment
from tasks.tracking.dataset_inputs import log_datasets, logged_data, tag_disagreements
from tasks.tracking.runs import TrackingRun
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, TrackedFile, file_md5

TEST_ROWS = "id,text,label\nt1,where is my parcel,shipping\nt2,refund me please,refund\n"


def _tracked(root: Path, path: str, content: str) -> TrackedFile:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return TrackedFile(path, file_md5(target), target.stat().st_size)


def _versions(root: Path, key: str, train_rows: str) -> tuple[DatasetVersion, DatasetVersion]:
    """(raw, curated) of one run: its own training rows, the shared test rows."""
    raw_train = _tracked(root, f"data/imports/{key}/train.csv", "id,text,label\n" + train_rows)
    raw_test = _tracked(root, "data/imports/shared/test.csv", "text,label\nwhere is my parcel,shipping\n")
    raw = DatasetVersion("data.dvc", "0" * 32, {"train": raw_train, "test": raw_test}, str(root / ".dvcstore"))
    curated = DatasetVersion(
        f"datasets/m/{key}",
        "1" * 32,
        {
            "train": _tracked(root, f"datasets/m/{key}/train.csv", "id,text,label\n" + train_rows),
            "test": _tracked(root, f"datasets/m/{key}/test.csv", TEST_ROWS),
        },
        str(root / ".dvcstore"),
    )
    return raw, curated


def test_a_run_reads_back_its_own_split_paths_when_an_earlier_run_logged_the_same_bytes(tmp_path):
    cfg = ThawConfig.model_validate(
        {"workspace": str(tmp_path), "model_name": "m", "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/ml.db"}}
    )
    client = client_for(cfg)
    experiment = ensure_experiment(client, cfg)
    runs = {}
    for key, train_rows in (("aaaa", "a1,lost my card,cards\n"), ("bbbb", "b1,card stolen,cards\n")):
        raw, curated = _versions(tmp_path, key, train_rows)
        run_id = client.create_run(experiment).info.run_id
        run = TrackingRun(run_id, tmp_path / run_id, cfg.tracking.tracking_uri, "", "local")
        log_datasets.fn(run, cfg, raw, curated)
        runs[key] = (run_id, curated)
    assert runs["aaaa"][1].files["test"].md5 == runs["bbbb"][1].files["test"].md5  # the same test bytes
    for key, (run_id, _) in runs.items():
        logged = logged_data(client, run_id)
        assert logged["curated.test"]["path"] == f"datasets/m/{key}/test.csv"
        assert logged["curated.train"]["path"] == f"datasets/m/{key}/train.csv"
        assert tag_disagreements(client.get_run(run_id).data.tags, logged) == []
    names = {i.dataset.name for i in client.get_run(runs["bbbb"][0]).inputs.dataset_inputs}
    assert {n.split("@")[0] for n in names} == {"m-raw-train", "m-raw-test", "m-curated-train", "m-curated-test"}
