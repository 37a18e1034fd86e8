"""``recorded_summaries`` against a real MLflow store: what runs in several experiments
recorded, in one search, and run ids from the registry that are not MLflow's are never
put into the search's filter."""

from __future__ import annotations

from tasks.tracking.run_record import recorded_summaries


def test_runs_in_any_experiment_give_their_record_and_foreign_ids_are_not_searched(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    ids = []
    for name, accuracy in (("first", 0.91234), ("second", 0.5)):
        run = client.create_run(client.create_experiment(name, artifact_location=str(tmp_path / name)))
        client.log_param(run.info.run_id, "rung", "partial")
        client.log_metric(run.info.run_id, "test_accuracy", accuracy)
        ids.append(run.info.run_id)
    client.delete_run(ids[1])  # a deleted run still says what it recorded
    bare = client.create_run(client.create_experiment("bare", artifact_location=str(tmp_path / "bare")))
    foreign = ["x') OR attributes.run_id LIKE ('%", "", None, ids[0].upper()]
    found = recorded_summaries(client, [*ids, bare.info.run_id, *foreign])
    assert found[ids[0]] == {
        "thaw.rung": "partial",
        "thaw.transfer.method": None,
        "thaw.test_accuracy": "0.9123",
        "thaw.test_macro_f1": None,
    }
    assert found[ids[1]]["thaw.test_accuracy"] == "0.5000"
    assert set(found[bare.info.run_id].values()) == {None}
    assert set(found) == {*ids, bare.info.run_id}
    assert recorded_summaries(client, foreign) == {}


def test_a_run_in_an_experiment_beyond_the_first_page_is_found(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from tasks.tracking import run_record

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    ids = []
    for name in ("a", "b", "c"):
        run = client.create_run(client.create_experiment(name, artifact_location=str(tmp_path / name)))
        client.log_param(run.info.run_id, "rung", name)
        ids.append(run.info.run_id)
    monkeypatch.setattr(run_record, "EXPERIMENTS_PAGE", 1)  # four experiments with Default: four pages
    found = recorded_summaries(client, ids)
    assert [found[run_id]["thaw.rung"] for run_id in ids] == ["a", "b", "c"]
