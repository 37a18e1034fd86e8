"""Tracking and registration in MLflow: one run per pipeline run, datasets logged as
inputs whose digest is the DVC md5, the selected model registered with ``challenger``.

MLflow calls go through an explicit ``MlflowClient`` bound to the configured tracking
URI. The fluent calls MLflow has no client for (logging a pyfunc model, loading one by a
``models:/`` URI) run inside ``scoped_tracking_uri``, which puts the process's previous
URIs back afterwards.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.tracking import artifact_root, tracking_uri

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclass(frozen=True)
class TrackingRun:
    """The MLflow run of a pipeline run and its local working directory."""

    run_id: str
    run_dir: Path
    tracking_uri: str
    git_commit: str  # of the workspace the run read its data and config from
    flow_run_id: str  # the Prefect flow run, or "local"


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


def alias_version(client, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise


def git_commit(path: Path) -> str:
    """HEAD of the git repository at ``path`` (``+dirty`` if tracked files changed)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def ensure_experiment(client, cfg: ThawConfig, name: str | None = None) -> str:
    """The id of experiment ``name`` (default ``cfg.tracking.experiment``), created on first use."""
    name = name or cfg.tracking.experiment
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(cfg))


def source_tags(cfg: ThawConfig, commit: str, flow_run_id: str) -> dict[str, str]:
    """MLflow's own fields for where a run came from, which its UI shows (Source, Created
    by, the commit), and the run's description (``mlflow.note.content``)."""
    from tasks.identity import registry_identity
    from tasks.links import links_markdown

    tags = {
        "mlflow.source.name": str(cfg.root),
        "mlflow.source.type": "PROJECT",
        "mlflow.user": registry_identity(cfg).user,  # authenticated by the server, or the OS user
        "mlflow.note.content": (
            f"thaw pipeline run for model **{cfg.model_name}** (config digest `{cfg.digest()[:16]}`, "
            f"commit `{commit[:12]}`). Running; the description is rewritten with the outcome when the run ends.\n\n"
            + links_markdown(cfg, commit=commit, flow_run_id=flow_run_id)
        ),
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
    if cfg.tracking.repo_url:
        tags["mlflow.source.git.repoURL"] = cfg.tracking.repo_url
    return tags


@task(name="open-tracking-run", retries=2, retry_delay_seconds=[2, 10])
def open_tracking_run(cfg: ThawConfig, flow_run_id: str) -> TrackingRun:
    """Start the MLflow run, tagged with config digest, git commit and Prefect flow run."""
    import yaml

    import thaw

    client = client_for(cfg)
    code_dir = Path(thaw.__file__).resolve().parent.parent
    commit = git_commit(cfg.root)
    tags = {
        "thaw.config_digest": cfg.digest(),
        "thaw.git_commit": commit,
        "thaw.code_commit": git_commit(code_dir),
        "thaw.version": thaw.__version__,
        "thaw.prefect_flow_run_id": flow_run_id,
        "thaw.model_name": cfg.model_name,
        **source_tags(cfg, commit, flow_run_id),
    }
    run = client.create_run(ensure_experiment(client, cfg), tags=tags, run_name=f"{cfg.model_name}-{flow_run_id[:8]}")
    run_dir = cfg.state_path / "runs" / run.info.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True), encoding="utf-8")
    client.log_artifact(run.info.run_id, str(run_dir / "config.yaml"))
    return TrackingRun(run.info.run_id, run_dir, tracking_uri(cfg), commit, flow_run_id)


@functools.lru_cache(maxsize=1)
def _dvc_source_class():
    """MLflow's DatasetSource for a DVC-tracked file (built once; MLflow is imported lazily).

    The source type is the remote's storage (``s3``, ``http`` or ``local``), the kinds the
    MLflow UI displays, with the object's address as ``uri``/``url``; the DVC facts (remote,
    path in the workspace, md5, ``.dvc`` file) ride along in the same dictionary."""
    from mlflow.data.dataset_source import DatasetSource

    class DvcDatasetSource(DatasetSource):
        """A file versioned by DVC: where it lives in the workspace and in the remote."""

        def __init__(self, spec: dict[str, str]) -> None:
            self.spec = spec

        def _get_source_type(self) -> str:
            return storage_kind(self.spec["remote"])

        def load(self, **kwargs):
            raise NotImplementedError("use `thaw restore-data` to fetch DVC-versioned data")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> DvcDatasetSource:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return dict(self.spec)

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DvcDatasetSource:
            return cls(dict(source_dict))

    return DvcDatasetSource


def storage_kind(remote: str) -> str:
    """The MLflow source type for an object in the DVC remote ``remote``."""
    if remote.startswith("s3://"):
        return "s3"
    return "http" if remote.startswith(("http://", "https://")) else "local"


def _dvc_dataset(
    name: str, path: str, md5: str, remote: str, dvc_file: str, columns: list[str], profile: dict[str, Any]
):
    """An MLflow dataset whose digest is the DVC md5, with the file's columns as its schema,
    a profile (rows, columns, label counts) and the DVC source: what the UI's drawer shows."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    class ProfiledDataset(MetaDataset):
        @property
        def profile(self) -> Any:
            return profile

        def to_dict(self) -> dict[str, str]:  # MetaDataset leaves the profile out
            return {**super().to_dict(), "profile": json.dumps(profile)}

    obj = f"files/md5/{md5[:2]}/{md5[2:]}"
    address = f"{remote.rstrip('/')}/{obj}" if remote else ""
    spec = {"remote": remote, "path": path, "md5": md5, "dvc_file": dvc_file, "object": obj}
    spec["url" if storage_kind(remote) == "http" else "uri"] = address
    source = _dvc_source_class()(spec)
    schema = Schema([ColSpec("string", c) for c in columns])
    return ProfiledDataset(source, name=name, digest=md5, schema=schema)


MAX_PROFILED_LABELS = 200  # beyond this the profile lists the most frequent ones


def frame_profile(frame) -> dict[str, Any]:
    """Rows, columns and label counts of a table with canonical columns."""
    counts = frame["label"].value_counts() if "label" in frame.columns else None
    profile: dict[str, Any] = {"num_rows": len(frame), "num_columns": len(frame.columns)}
    if counts is not None:
        profile["num_labels"] = len(counts)
        profile["label_counts"] = {str(k): int(v) for k, v in counts.head(MAX_PROFILED_LABELS).items()}
    return profile


def _split_dataset(cfg: ThawConfig, context: str, split: str, version: DatasetVersion):
    """The MLflow dataset of one raw or curated split (read back to profile it)."""
    from tasks.ingest import input_columns, read_labelled_table
    from thaw.datasets import read_table

    f = version.files[split]
    local = cfg.root / f.path
    if context == "raw":
        columns = input_columns(local)
        profile = frame_profile(read_labelled_table(local, cfg.data.columns)) | {"num_columns": len(columns)}
        dvc_file = version.dvc_file
    else:
        frame = read_table(version.local_path(cfg.root, split))
        columns, profile, dvc_file = list(frame.columns), frame_profile(frame), f"{f.path}.dvc"
    profile["bytes"] = f.size
    return _dvc_dataset(dataset_name(cfg, context, split), f.path, f.md5, version.remote, dvc_file, columns, profile)


def dataset_name(cfg: ThawConfig, context: str, split: str) -> str:
    return f"{cfg.model_name}-{context}-{split}"


@task(name="log-datasets")
def log_datasets(run: TrackingRun, cfg: ThawConfig, raw: DatasetVersion, curated: DatasetVersion) -> None:
    """Log raw and curated files as MLflow dataset inputs (digest = DVC md5, schema,
    profile, DVC source), plus tags."""
    from mlflow.entities import DatasetInput, InputTag

    client = client_for(cfg)
    tags = {
        "thaw.dvc_remote": curated.remote,
        "thaw.raw.dvc_file": raw.dvc_file,
        "thaw.raw.md5": raw.md5,
        "thaw.raw.policy": cfg.versioning.raw_policy,
        "thaw.raw.remote": raw.remote,
    }
    inputs = []
    for context, version in (("raw", raw), ("curated", curated)):
        for split, f in sorted(version.files.items()):
            ds = _split_dataset(cfg, context, split, version)
            role = "training" if split == "train" else split
            inputs.append(
                DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", f"{context}-{role}")])
            )
            tags[f"thaw.{context}.{split}.md5"] = f.md5
            tags[f"thaw.{context}.{split}.path"] = f.path
    client.log_inputs(run.run_id, datasets=inputs)
    for key, value in tags.items():
        client.set_tag(run.run_id, key, value)


@task(name="log-run-results")
def log_run_results(
    run: TrackingRun,
    cfg: ThawConfig,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifacts: list[Path],
    datasets: dict[str, tuple[str, str]] | None = None,
    curves: list[tuple[str, float, int]] | None = None,
) -> None:
    """Params, metrics (each tied to the dataset it was measured on, when ``datasets``
    names one), per-step ``curves`` and artifact files (directories logged whole)."""
    client = client_for(cfg)
    datasets = datasets or {}
    for key, value in sorted(params.items()):
        client.log_param(run.run_id, key, str(value)[:6000])
    for key, value in sorted(metrics.items()):
        name, digest = datasets.get(key, (None, None))
        client.log_metric(run.run_id, key, float(value), dataset_name=name, dataset_digest=digest)
    for key, value, step in curves or []:
        client.log_metric(run.run_id, key, float(value), step=step)
    log_files(client, run.run_id, artifacts)


@task(name="tie-metrics-to-model")
def tie_metrics_to_model(
    cfg: ThawConfig, registered: RegisteredVersion, metrics: dict[str, float], datasets: dict[str, tuple[str, str]]
) -> None:
    """Log the registered model's own test metrics (``test_*``; not the other rungs') again
    against its logged model, with their dataset, so the model's page lists the data it
    was evaluated on ("Datasets used")."""
    client = client_for(cfg)
    mv = client.get_model_version(registered.name, registered.version)
    # MLflow 3 keeps the logged model's id in the version's source (models:/m-...)
    model_id = mv.model_id or (mv.source.removeprefix("models:/") if mv.source.startswith("models:/m-") else None)
    if not model_id:
        raise AssertionError(f"{registered.name} v{registered.version} has no logged model ({mv.source})")
    for key, (name, digest) in sorted(datasets.items()):
        if not key.startswith("test_"):
            continue
        client.log_metric(
            registered.run_id, key, float(metrics[key]), dataset_name=name, dataset_digest=digest, model_id=model_id
        )


def log_files(client, run_id: str, paths: list[Path]) -> None:
    """Log each existing file as an artifact of the run, and each directory whole."""
    for path in paths:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))


MODEL_DIGEST_TAG = "thaw.model.sha256"  # of every file of the logged model, taken at registration
# Written by MLflow into a download of models:/NAME/VERSION (the name and version, not
# model content): left out of the digest, so a download by version matches the one taken
# at registration.
DOWNLOAD_METADATA = ("registered_model_meta",)


def model_files_digest(directory: Path) -> str:
    """The digest recorded as ``thaw.model.sha256`` for a model's files in ``directory``."""
    from thaw.datasets import tree_sha256

    return tree_sha256(directory, ignore=DOWNLOAD_METADATA)


def verified_model_dir(cfg: ThawConfig, name: str, version: str) -> Path:
    """A local copy of ``name`` version ``version`` whose files hash to the digest recorded
    at registration; refuses (UserError) a version whose stored files changed since, or
    that records no digest. Its code (``pyfunc_entry.py``) runs only from such a copy."""
    import shutil
    import tempfile

    import mlflow

    from thaw.errors import UserError

    recorded = client_for(cfg).get_model_version(name, version).tags.get(MODEL_DIGEST_TAG)
    if not recorded:
        raise UserError(
            f"{name} v{version} records no digest of its files ({MODEL_DIGEST_TAG}): refusing to run its code"
        )
    cache = cfg.state_path / "models" / recorded
    if cache.is_dir():
        if model_files_digest(cache) == recorded:
            return cache
        shutil.rmtree(cache)  # a local copy altered after it was verified: fetch it again
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-v{version}-", dir=cache.parent))
    try:
        with scoped_tracking_uri(tracking_uri(cfg)):
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
            )
        actual = model_files_digest(local)
        if actual != recorded:
            raise UserError(
                f"{name} v{version}: the stored model files changed since registration (sha256 {actual[:16]}, "
                f"recorded {recorded[:16]}): refusing to run its code"
            )
        try:
            local.replace(cache)
        except OSError:  # another process put the same verified files there first
            if model_files_digest(cache) != recorded:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache


def load_verified_model(cfg: ThawConfig, name: str, version: str):
    """The MLflow pyfunc of ``name`` version ``version``, loaded from a verified copy."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(verified_model_dir(cfg, name, version)))


@task(name="close-tracking-run")
def close_tracking_run(run: TrackingRun, cfg: ThawConfig, status: str, leftovers: list[Path], reason: str = "") -> None:
    """End the run as FINISHED, FAILED or KILLED, logging whatever reports exist; ``reason``
    (why it did not finish) is kept as the run's ``thaw.end_reason`` tag."""
    client = client_for(cfg)
    log_files(client, run.run_id, leftovers)
    if reason:
        client.set_tag(run.run_id, "thaw.end_reason", reason)
    client.set_tag(run.run_id, "mlflow.note.content", _ended_description(client, cfg, run, status, reason))
    client.set_terminated(run.run_id, status=status)


def _ended_description(client, cfg: ThawConfig, run: TrackingRun, status: str, reason: str) -> str:
    """The run's description once it ends: what it produced or why it stopped, and links."""
    from tasks.links import links_markdown

    experiment = client.get_run(run.run_id).info.experiment_id
    found = client.search_model_versions(f"name='{cfg.model_name}' and run_id='{run.run_id}'")
    version = str(min(int(mv.version) for mv in found)) if found else None
    if status == "FINISHED" and version:
        what = f"registered **{cfg.model_name} v{version}**; its model card is the version's description."
    elif status == "FINISHED":
        what = "finished without registering a model."
    else:
        what = f"ended **{status}**: {reason or 'no reason recorded'}"
    return (
        f"thaw pipeline run for model **{cfg.model_name}** (config digest `{cfg.digest()[:16]}`): {what}\n\n"
        + links_markdown(
            cfg,
            run.git_commit,
            run.flow_run_id,
            run=(experiment, run.run_id),
            version=(cfg.model_name, version) if version else None,
        )
        + "\n- data: the run's Datasets (DVC md5, path and remote of each split) and `curation_report.md`"
    )
