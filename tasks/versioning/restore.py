"""Restore and re-verify data from the DVC remote using only what a model version records.

DVC 3 stores every object content-addressed under ``files/md5/<2>/<30>`` in a remote;
a directory is an object ``<md5>.dir`` listing its files. With the md5 and the remote
recorded on the model version, the exact bytes come back even after the workspace copy
and the local DVC cache are gone. The remote is reached through DVC's own filesystem
layer, so whatever DVC can push to (a directory, S3 or MinIO, ...) can be read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thaw.config import ThawConfig
from thaw.datasets import SPLITS, atomic_output, file_md5, stream_md5
from thaw.errors import UserError


@dataclass(frozen=True)
class DvcRemote:
    """A DVC remote opened for reading objects by md5."""

    url: str
    fs: Any  # a dvc_objects FileSystem
    root: str

    def object_path(self, md5: str) -> str:
        return self.fs.join(self.root, "files", "md5", md5[:2], md5[2:])

    def has(self, md5: str) -> bool:
        return self.fs.exists(self.object_path(md5))

    def md5_of(self, md5: str) -> str:
        """The md5 of the stored object's bytes, streamed."""
        with self.fs.open(self.object_path(md5), "rb") as handle:
            return stream_md5(handle)

    def read_text(self, md5: str) -> str:
        with self.fs.open(self.object_path(md5), "rb") as handle:
            return handle.read().decode("utf-8")

    def download(self, md5: str, target: Path) -> None:
        self.fs.get_file(self.object_path(md5), str(target))


def open_remote(cfg: ThawConfig, url: str) -> DvcRemote:
    """The remote at ``url``; the configured remote options apply when it is the configured remote."""
    from dvc.fs import get_cloud_fs

    options = dict(cfg.versioning.remote_options) if url == cfg.versioning.remote_url else {}
    try:
        cls, conf, root = get_cloud_fs({}, url=url, **options)
        return DvcRemote(url, cls(**conf), root)
    except Exception as exc:  # unknown scheme, missing plugin, bad option: the user's setting
        raise UserError(f"DVC remote {url}: cannot open it ({exc})") from None


@dataclass(frozen=True)
class LineageCheck:
    """What re-verifying a version's recorded digests found: problems (empty: all good) and
    notes on what the raw-data policy keeps out of reach of the check."""

    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()


def verify_lineage(cfg: ThawConfig, tags: dict[str, str]) -> LineageCheck:
    """Re-verify every recorded dataset digest against the DVC remote(s) that hold it."""
    url = tags.get("thaw.dvc_remote")
    if not url:
        return LineageCheck(("no DVC remote recorded on the version",))
    remote = open_remote(cfg, url)
    problems = []
    for split in SPLITS:
        md5 = tags.get(f"thaw.curated.{split}.md5")
        if md5 is None:
            problems.append(f"no {split} digest recorded")
        elif not remote.has(md5):
            problems.append(f"{split} md5 {md5} is missing from the remote {url}")
        elif remote.md5_of(md5) != md5:
            problems.append(f"{split} object {remote.object_path(md5)} does not hash to {md5}")
    raw, policy = tags.get("thaw.raw.md5", ""), tags.get("thaw.raw.policy", "same_remote")
    if policy == "local":
        note = f"raw data kept local by policy (raw_policy: local): md5 {raw} is recorded, not re-checked"
        return LineageCheck(tuple(problems), (note,))
    raw_url = tags.get("thaw.raw.remote") or url
    raw_remote = remote if raw_url == url else open_remote(cfg, raw_url)
    problems += _raw_problems(raw_remote, raw)
    return LineageCheck(tuple(problems))


def _raw_problems(remote: DvcRemote, raw: str) -> list[str]:
    if not raw or not remote.has(raw):
        return [f"raw data md5 {raw} is missing from the remote {remote.url}"]
    if not raw.endswith(".dir"):
        return []
    return [
        f"raw file {entry['relpath']} (md5 {entry['md5']}) is missing from the remote {remote.url}"
        for entry in json.loads(remote.read_text(raw))
        if not remote.has(entry["md5"])
    ]


def restore_split(
    cfg: ThawConfig, tags: dict[str, str], split: str, dest: Path, remote: DvcRemote | None = None
) -> Path:
    """Copy the recorded ``split`` file from the remote into ``dest`` and check its md5
    (``remote``: the version's remote already opened, else it is opened here). A file
    already in ``dest`` with the recorded md5 is kept as it is."""
    md5, path, url = (
        tags.get(f"thaw.curated.{split}.md5"),
        tags.get(f"thaw.curated.{split}.path"),
        tags.get("thaw.dvc_remote"),
    )
    if not md5 or not path or not url:
        raise UserError(f"the model version records no {split} dataset")
    remote = remote or open_remote(cfg, url)
    if not remote.has(md5):
        raise UserError(f"{split} data (md5 {md5}) is not in the DVC remote {url}")
    target = dest / Path(path).name
    if target.is_file() and file_md5(target) == md5:
        return target  # already restored, and still exactly what was recorded
    with atomic_output(target) as tmp:
        remote.download(md5, tmp)
        if file_md5(tmp) != md5:
            raise UserError(f"{remote.object_path(md5)}: content does not match the recorded md5 {md5}")
    return target


def restore_data(cfg: ThawConfig, ref: str, dest: Path) -> dict[str, Path]:
    """Restore train/validation/test of a model version into ``dest``, byte-identical."""
    from tasks.tracking.client import resolve_version

    mv = resolve_version(cfg, ref)
    if not mv.tags.get("thaw.dvc_remote"):
        raise UserError(f"{ref}: the model version records no DVC remote")
    remote = open_remote(cfg, mv.tags["thaw.dvc_remote"])
    return {split: restore_split(cfg, mv.tags, split, dest, remote) for split in SPLITS}
