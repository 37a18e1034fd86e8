"""Links an auditor can click: from a run or a model card to the MLflow run and model
version, the commit (when the repository's URL is configured) and the Prefect flow run
(when a Prefect UI is known).

MLflow links are relative to the UI's own address (``#/...``), so they work wherever the
UI is served (``thaw ui``, ``thaw up``, a team server) and in every markdown field it renders.
"""

from __future__ import annotations

from urllib.parse import quote

from thaw.config import WEB_URL, ThawConfig


def mlflow_run_link(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_version_link(name: str, version: str) -> str:
    return f"#/models/{quote(name, safe='')}/versions/{version}"


def commit_url(cfg: ThawConfig, commit: str) -> str | None:
    """The commit's page on the configured repository host (None: not configured or unknown)."""
    sha = commit.removesuffix("+dirty")
    if not cfg.tracking.repo_url or sha in ("", "unknown"):
        return None
    return f"{cfg.tracking.repo_url}/commit/{sha}"


def prefect_flow_run_url(cfg: ThawConfig, flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI: the configured URL, else Prefect's own
    ``PREFECT_UI_URL`` (known when the run talks to a Prefect server)."""
    if not flow_run_id or flow_run_id == "local":
        return None
    ui = cfg.tracking.prefect_ui_url
    if ui is None:
        from prefect.settings import get_current_settings

        ui = get_current_settings().ui_url
    ui = str(ui).rstrip("/") if ui else ""
    return f"{ui}/runs/flow-run/{flow_run_id}" if WEB_URL.fullmatch(ui) else None  # the setting is input too


def links_markdown(
    cfg: ThawConfig,
    commit: str,
    flow_run_id: str,
    run: tuple[str, str] | None = None,
    version: tuple[str, str] | None = None,
) -> str:
    """A markdown list of the links known for a run (``run`` = experiment id, run id) and
    a model version (``version`` = name, number); what is not known says why."""
    lines = []
    if run:
        lines.append(f"- MLflow run: [{run[1]}]({mlflow_run_link(*run)})")
    if version:
        lines.append(f"- model version: [{version[0]} v{version[1]}]({mlflow_version_link(*version)})")
    url = commit_url(cfg, commit)
    lines.append(
        f"- code: commit [`{commit[:12]}`]({url})"
        if url
        else f"- code: commit `{commit}` (set `tracking.repo_url` to link it)"
    )
    flow_url = prefect_flow_run_url(cfg, flow_run_id)
    if flow_url:
        lines.append(f"- Prefect flow run: [{flow_run_id}]({flow_url})")
    elif flow_run_id and flow_run_id != "local":
        lines.append(f"- Prefect flow run: `{flow_run_id}` (set `tracking.prefect_ui_url` to link it)")
    return "\n".join(lines)
