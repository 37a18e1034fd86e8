"""A registered model's files as stored: hashed at registration (``thaw.model.sha256``),
verified before any later load, and loaded by the installed thaw from weights and JSON.

Every value read back from the registry is input written by whoever registered the
version: the digest tag must be 64 hex digits before it names a directory, the version a
number, the stored files only what thaw writes, and the backbone one this config allows.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from tasks.tracking.client import client_for, scoped_tracking_uri
from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.tracking import tracking_uri

log = logging.getLogger(__name__)

MODEL_DIGEST_TAG = "thaw.model.sha256"  # of every file of the logged model, taken at registration
# Written by MLflow into a download of models:/NAME/VERSION (the name and version, not
# model content): left out of the digest, so a download by version matches the one taken
# at registration.
DOWNLOAD_METADATA = ("registered_model_meta",)


def model_files_digest(directory: Path) -> str:
    """The digest recorded as ``thaw.model.sha256`` for a model's files in ``directory``."""
    from thaw.datasets import tree_sha256

    return tree_sha256(directory, ignore=DOWNLOAD_METADATA)


SHA256 = re.compile(r"[0-9a-f]{64}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")
# What a stored thaw model may hold, and nothing else: MLflow's metadata files, thaw's own
# models-from-code entry (byte-identical to the installed one) and, under
# artifacts/<MODEL_ARTIFACT>/, weights as safetensors, JSON and ONNX graphs. A pickle, another code
# file or a code directory is refused before any of it runs.
METADATA_FILES = frozenset(
    {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "input_example.json", "serving_input_example.json"}
)
ENTRY_FILE = "pyfunc_entry.py"
CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"  # how MLflow loads a models-from-code pyfunc
WEIGHT_SUFFIXES = frozenset({".json", ".safetensors", ".onnx"})  # .onnx: checked again at load (thaw.onnx_export)


def checked_version(name: str, version: str) -> str:
    """``version`` when it is a version number; UserError otherwise."""
    if not VERSION.fullmatch(str(version)):
        raise UserError(f"{name}: {str(version)[:40]!r} is not a model version number")
    return str(version)


def recorded_digest(name: str, version: str, tags: dict[str, str]) -> str:
    """The ``thaw.model.sha256`` tag of a version, refused unless it is 64 hex digits."""
    recorded = tags.get(MODEL_DIGEST_TAG)
    if not recorded:
        raise UserError(f"{name} v{version} records no digest of its files ({MODEL_DIGEST_TAG}): refusing to load it")
    if not SHA256.fullmatch(recorded):
        raise UserError(
            f"{name} v{version}: its {MODEL_DIGEST_TAG} tag is not a sha256 (64 hex digits): refusing to load it"
        )
    return recorded


def verified_model_dir(cfg: ThawConfig, name: str, version: str) -> Path:
    """A local copy of ``name`` version ``version`` whose files hash to the digest recorded
    at registration and hold only what thaw writes (``check_stored_files``); refuses
    (UserError) anything else. Nothing derived from the registry is ever deleted: a local
    copy altered since it was verified is set aside and fetched again."""
    import tempfile

    import mlflow

    version = checked_version(name, version)
    recorded = recorded_digest(name, version, client_for(cfg).get_model_version(name, version).tags)
    models = cfg.state_path / "models"
    cache = models / recorded  # a validated hex digest: always a child of the models directory
    if cache.is_dir():
        if model_files_digest(cache) == recorded:
            check_stored_files(cache, name, version)
            return cache
        aside = models / "altered" / f"{recorded}.{os.getpid()}.{time.time_ns()}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        cache.rename(aside)
        log.warning("%s v%s: the local copy changed after it was verified; set aside in %s", name, version, aside)
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".v{version}-", dir=models) as staging:
        with scoped_tracking_uri(tracking_uri(cfg)):
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=staging)
            )
        actual = model_files_digest(local)
        if actual != recorded:
            raise UserError(
                f"{name} v{version}: the stored model files changed since registration (sha256 {actual[:16]}, "
                f"recorded {recorded[:16]}): refusing to load it"
            )
        check_stored_files(local, name, version)  # before it is kept where later loads look
        try:
            local.replace(cache)
        except OSError:  # another process put the same verified files there first
            if model_files_digest(cache) != recorded:
                raise
    check_stored_files(cache, name, version)
    return cache


def check_stored_files(directory: Path, name: str, version: str) -> Path:
    """The directory of the model's weights inside the stored model ``directory``, when it
    holds only MLflow's metadata, thaw's own entry file and those weights and JSON, and its
    MLmodel loads thaw's entry and nothing else; UserError naming the first file or
    setting that is not."""

    def refuse(what: str) -> UserError:
        return UserError(f"{name} v{version}: {what}: refusing to load it (thaw loads weights and JSON only)")

    weights_dir = _check_mlmodel(directory / "MLmodel", refuse)
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_symlink():
            raise refuse(f"{rel.as_posix()} is a link")
        if path.is_dir() or rel.parts[0] in DOWNLOAD_METADATA:
            continue
        if rel.parts[0] == "artifacts":
            weights = path.suffix in WEIGHT_SUFFIXES or path.name == "README.md"  # PEFT writes an adapter card
            if rel.parts[:2] != weights_dir.parts or not weights:
                raise refuse(f"it stores {rel.as_posix()}")
        elif rel.as_posix() == ENTRY_FILE:
            if path.read_bytes() != installed_entry().read_bytes():
                raise refuse(f"its {ENTRY_FILE} is not the installed thaw's")
        elif rel.as_posix() not in METADATA_FILES:
            raise refuse(f"it stores {rel.as_posix()}")
    return directory / weights_dir


def _mapping(value: object) -> dict:
    """``value`` if it is a mapping, else an empty one (what was not one names nothing)."""
    return value if isinstance(value, dict) else {}


def _check_mlmodel(path: Path, refuse) -> Path:
    """The MLmodel must declare thaw's entry as a models-from-code pyfunc with the model
    directory as its one artifact, and nothing to unpickle, no code directory, no other
    flavor; returns that artifact's path (``artifacts/<name>``)."""
    import yaml

    from thaw.parse import yaml_value
    from thaw.serving import MODEL_ARTIFACT

    try:
        document = yaml_value(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise refuse("its MLmodel file is missing or unreadable") from None
    # every level is whoever wrote the file's: a list or a string where a mapping belongs
    # is refused like any other MLmodel thaw did not write, never an AttributeError
    flavors = _mapping(document).get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        shown = f"flavors {sorted(map(str, flavors))}"[:200] if isinstance(flavors, dict) else "no flavors mapping"
        raise refuse(f"its MLmodel declares {shown}")
    pyfunc = _mapping(flavors["python_function"])
    if pyfunc.get("loader_module") != CODE_MODEL_LOADER or pyfunc.get("code") or pyfunc.get("python_model"):
        raise refuse("its MLmodel loads something other than thaw's entry")
    if Path(str(pyfunc.get("model_code_path", ""))).name != ENTRY_FILE:
        raise refuse("its MLmodel loads something other than thaw's entry")
    artifacts = _mapping(pyfunc.get("artifacts"))
    where = str(_mapping(artifacts.get(MODEL_ARTIFACT)).get("path", ""))
    parts = Path(where).parts
    if set(artifacts) != {MODEL_ARTIFACT} or len(parts) != 2 or parts[0] != "artifacts" or parts[1] in ("..", "."):
        raise refuse("its MLmodel names artifacts other than the model directory")
    return Path(*parts)


def installed_entry() -> Path:
    """The models-from-code entry of the installed thaw."""
    import thaw

    return Path(thaw.__file__).parent / ENTRY_FILE


def load_verified_model(cfg: ThawConfig, name: str, version: str):
    """The predictor of ``name`` version ``version`` (``thaw.serving.ThawPredictor``), built
    by the installed thaw from a verified copy's weights and JSON: no registrant code runs,
    nothing is unpickled, and its backbone must be one this config allows."""
    from thaw.serving import ThawPredictor

    stored = verified_model_dir(cfg, name, version)
    return ThawPredictor(check_stored_files(stored, name, version), allowed_backbones=allowed_backbone_sources(cfg))


def allowed_backbone_sources(cfg: ThawConfig) -> frozenset[str]:
    """Where a stored model may say its backbone comes from: thaw's packaged backbones and
    this config's own backbone directory (never a path or hub id a registrant chose)."""
    from thaw.modeling import PACKAGED_BACKBONES

    allowed = {f"package:{module}" for module in PACKAGED_BACKBONES.values()}
    if cfg.backbone.path is not None:
        allowed.add(f"path:{Path(cfg.backbone.path).resolve()}")
    return frozenset(allowed)
