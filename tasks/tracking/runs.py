"""The MLflow run of a pipeline run: opened with its source tags (config digest, commits,
Prefect flow run), results logged, and closed with a description of what it produced or
why it stopped."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from tasks.tracking.client import RegisteredVersion, client_for, ensure_experiment, log_files
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.errors import retry_unless_user_error
from thaw.tracking import tracking_uri


@dataclass(frozen=True)
class TrackingRun:
    """The MLflow run of a pipeline run and its local working directory."""

    run_id: str
    run_dir: Path
    tracking_uri: str
    git_commit: str  # of the workspace the run read its data and config from
    flow_run_id: str  # the Prefect flow run, or "local"


def git_commit(path: Path) -> str:
    """HEAD of the git repository at ``path`` (``+dirty`` if tracked files changed)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def source_tags(cfg: ThawConfig, commit: str, flow_run_id: str) -> dict[str, str]:
    """MLflow's own fields for where a run came from, which its UI shows (Source, Created
    by, the commit), and the run's description (``mlflow.note.content``)."""
    from tasks.tracking.identity import registry_identity
    from tasks.tracking.links import links_markdown

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


@task(name="open-tracking-run", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_user_error)
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
    (run_dir / artifacts.CONFIG).write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True), encoding="utf-8"
    )
    client.log_artifact(run.info.run_id, str(run_dir / artifacts.CONFIG))
    return TrackingRun(run.info.run_id, run_dir, tracking_uri(cfg), commit, flow_run_id)


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
    from tasks.tracking.links import links_markdown

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
