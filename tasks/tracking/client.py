"""The MLflow client every stage talks through, bound to the configured tracking URI, and
the few registry reads they share (aliases, 'does not exist').

The fluent calls MLflow has no client for (logging a pyfunc model, loading one by a
``models:/`` URI) run inside ``scoped_tracking_uri``, which puts the process's previous
URIs back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from thaw.config import ThawConfig, model_ref_problem
from thaw.errors import UserError
from thaw.tracking import artifact_root, tracking_uri

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version and the alias it was given."""

    name: str
    version: str
    alias: str
    run_id: str


def client_for(cfg: ThawConfig):
    """An MlflowClient on this config's tracking and registry URI."""
    from mlflow import MlflowClient

    cfg.state_path.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def scoped_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API on ``uri`` (tracking and registry) for the block, then exactly as
    before: MLflow keeps the URIs in module globals and copies them into the environment
    (for subprocesses), and both are put back, unset ones unset."""
    import os

    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_state._tracking_uri, registry_state._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_state.set_tracking_uri(saved[0])
        registry_state._registry_uri = saved[1]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_missing(exc: BaseException) -> bool:
    """True when an MLflow error says the model, version or alias does not exist (and not,
    say, that the server refused us or could not be reached)."""
    code = getattr(exc, "error_code", None)
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def run_of(client, run_id: str | None):
    """The MLflow run ``run_id``, or None when there is none (a version made without a
    run, or whose run was deleted)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        return None


def alias_version(client, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise


def ensure_experiment(client, cfg: ThawConfig, name: str | None = None) -> str:
    """The id of experiment ``name`` (default ``cfg.tracking.experiment``), created on first use."""
    name = name or cfg.tracking.experiment
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(cfg))


def log_files(client, run_id: str, paths: list[Path]) -> None:
    """Log each existing file as an artifact of the run, and each directory whole."""
    for path in paths:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` or ``NAME`` (-> challenger) into (name, alias, version);
    UserError for anything else (``model_ref_problem``: a deployment's parameter is input too)."""
    if problem := model_ref_problem(ref):
        raise UserError(f"{ref[:200]!r}: expected NAME@ALIAS or NAME/VERSION; {problem}")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, alias, None
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return name, None, version
    return ref, CHALLENGER, None


def registered_model(client, name: str):
    """The registered model ``name``; UserError when the registry has none of that name."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise UserError(f"no registered model {name!r} (`thaw models` lists them)") from None


def resolve_version(cfg: ThawConfig, ref: str):
    """The MLflow ModelVersion a reference points at; UserError when there is none."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_ref(ref)
    client = client_for(cfg)
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise UserError(f"no model version {ref!r} in {tracking_uri(cfg)}") from None
