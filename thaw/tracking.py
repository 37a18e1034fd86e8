"""Where MLflow is: the tracking URI and where new experiments keep artifacts.

Core, so that everything that needs the URI (the registry tasks, the identity check,
the promotion lock) reads the same answer without importing each other.
"""

from __future__ import annotations

import os

from thaw.config import ThawConfig


def tracking_uri(cfg: ThawConfig) -> str:
    """The tracking URI, first found: the config's ``tracking.tracking_uri``, the
    ``MLFLOW_TRACKING_URI`` environment variable (MLflow's own convention), the embedded
    SQLite store in the state directory."""
    return (
        cfg.tracking.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{cfg.state_path / 'mlflow.db'}"
    )


def artifact_root(cfg: ThawConfig) -> str | None:
    """Where a new experiment stores artifacts: as configured; on a tracking server, the
    server's choice (``mlflow-artifacts:/``, served to every client); embedded, the
    ``<state>/mlartifacts`` directory."""
    if cfg.tracking.artifact_root:
        return cfg.tracking.artifact_root
    if tracking_uri(cfg).startswith(("http://", "https://")):
        return None
    return (cfg.state_path / "mlartifacts").as_uri()
