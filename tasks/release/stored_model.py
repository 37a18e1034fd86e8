"""A registered model's files as stored: hashed at registration (``thaw.model.sha256``)
and verified before any later load."""

from __future__ import annotations

from pathlib import Path

from tasks.tracking.client import client_for, scoped_tracking_uri
from thaw.config import ThawConfig
from thaw.tracking import tracking_uri

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
