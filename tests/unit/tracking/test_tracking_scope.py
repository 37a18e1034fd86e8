"""MLflow's fluent API is pointed at a store only for a block, then put back exactly."""

import os

import mlflow

from tasks.tracking.client import scoped_tracking_uri


def test_scoped_tracking_uri_restores_the_globals_and_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    inside = f"sqlite:///{tmp_path / 'm.db'}"
    with scoped_tracking_uri(inside):
        assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == inside
        assert os.environ["MLFLOW_TRACKING_URI"] == os.environ["MLFLOW_REGISTRY_URI"] == inside
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
