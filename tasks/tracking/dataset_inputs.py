"""Raw and curated splits logged as MLflow dataset inputs: digest = DVC md5, schema,
profile and the object's address in the DVC remote, what the UI's drawer shows."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from prefect import task

from tasks.tracking.client import client_for, run_of
from tasks.tracking.runs import TrackingRun
from thaw.config import ThawConfig
from thaw.datasets import SPLITS, DatasetVersion
from thaw.parse import json_value
from thaw.shown import quoted_tag


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
    from thaw.datasets import read_table
    from thaw.ingest import input_columns, read_labelled_table

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
    name = dataset_name(cfg, context, split, version)
    return _dvc_dataset(name, f.path, f.md5, version.remote, dvc_file, columns, profile)


def dataset_name(cfg: ThawConfig, context: str, split: str, version: DatasetVersion) -> str:
    """``<model>-<context>-<split>@<key>``, the key 8 hex digits of a hash of where the
    split was versioned (its path, DVC file and remote). MLflow keeps one dataset per
    experiment, name and digest, and gives every later run that logs the same name and
    digest the first one's source: a run whose curated test split had the bytes of an
    earlier run's, in another directory, read back the earlier path, and its version's
    lineage check refused promotion ("the tag was edited"). Model names hold no ``@``."""
    f = version.files[split]
    dvc_file = version.dvc_file if context == "raw" else f"{f.path}.dvc"
    where = json.dumps([f.path, dvc_file, version.remote])
    return f"{cfg.model_name}-{context}-{split}@{hashlib.sha256(where.encode()).hexdigest()[:8]}"


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


CONTEXTS = ("raw", "curated")


def logged_data(client, run_id: str | None) -> dict[str, dict[str, str] | None]:
    """What the dataset inputs logged on run ``run_id`` record, by ``<context>.<split>``
    ('curated.train', 'raw.test'): the md5, the path in the workspace and the DVC remote.

    MLflow has no call that edits or removes a run's inputs once logged, while a version's
    tags can be rewritten by anyone allowed to edit the model: the lineage tags are read
    against these. A split logged twice with different facts, or whose digest is not the
    md5 its source names, maps to None (``tag_disagreements`` reports it). A version made
    without a run, or whose run is gone, has nothing logged: {}."""
    run = run_of(client, run_id)
    return logged_facts(run.inputs.dataset_inputs) if run is not None else {}


def logged_facts(dataset_inputs) -> dict[str, dict[str, str] | None]:
    """``logged_data`` of a run already read: its ``inputs.dataset_inputs``."""
    logged: dict[str, dict[str, str] | None] = {}
    for entry in dataset_inputs:
        _, context, split = ("--" + entry.dataset.name.split("@")[0]).rsplit("-", 2)
        if context not in CONTEXTS or split not in SPLITS:
            continue  # another input logged on the run: not one of thaw's splits
        try:
            source = json_value(entry.dataset.source)
        except ValueError:
            source = {}
        facts = {k: str(source.get(k, "")) if isinstance(source, dict) else "" for k in ("md5", "path", "remote")}
        key = f"{context}.{split}"
        consistent = facts["md5"] == entry.dataset.digest and logged.get(key, facts) == facts
        logged[key] = facts if consistent else None
    return logged


def tag_disagreements(tags: dict[str, str], logged: dict[str, dict[str, str] | None]) -> list[str]:
    """Each lineage tag of a version that differs from what its run logged (``logged_data``),
    in one line each; empty when they agree. Only splits the run logged are checked, plus
    any curated split tag the run has no input for; a run that logged no input at all
    (not registered by thaw) gives nothing to check, which the caller says."""
    if not logged:
        return []
    problems = [
        f"the run logged its {key} input inconsistently: its tags cannot be checked"
        for key, f in logged.items()
        if f is None
    ]
    expected: dict[str, str] = {}
    for key, facts in logged.items():
        if facts is None:
            continue
        context, split = key.split(".")
        expected[f"thaw.{context}.{split}.md5"] = facts["md5"]
        expected[f"thaw.{context}.{split}.path"] = facts["path"]
        expected["thaw.dvc_remote" if context == "curated" else "thaw.raw.remote"] = facts["remote"]
    problems += edited_tags(expected, tags)
    raw_remotes = {f["remote"] for key, f in logged.items() if f and key.startswith("raw.")}
    if raw_remotes and (tags.get("thaw.raw.policy") == "local") != (raw_remotes == {""}):
        kept = "kept raw data local" if raw_remotes == {""} else "pushed raw data to a remote"
        problems.append(
            f"tag thaw.raw.policy reads {quoted_tag(tags.get('thaw.raw.policy'))}, "
            f"but the run {kept}: the tag was edited"
        )
    problems += [
        f"tag thaw.curated.{split}.md5 names data the run logged no input for"
        for split in SPLITS
        if f"thaw.curated.{split}.md5" in tags and f"curated.{split}" not in logged
    ]
    return problems


def edited_tags(expected: dict[str, str], tags: dict[str, str], logged_by: str = "the run") -> list[str]:
    """One line for each tag of ``expected`` (tag -> what the run logged) that ``tags``
    does not read the same, in tag order."""
    return [
        f"tag {key} reads {quoted_tag(tags.get(key))}, but {logged_by} logged {quoted_tag(value)}: the tag was edited"
        for key, value in sorted(expected.items())
        if tags.get(key) != value
    ]
