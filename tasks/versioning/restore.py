"""Restore and re-verify data from the DVC remote using only what a model version records.

DVC 3 stores every object content-addressed under ``files/md5/<2>/<30>`` in a remote;
a directory is an object ``<md5>.dir`` listing its files. With the md5 and the remote
recorded on the model version, the exact bytes come back even after the workspace copy
and the local DVC cache are gone. The remote is reached through DVC's own filesystem
layer, so whatever DVC can push to (a directory, S3 or MinIO, ...) can be read back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thaw.config import ThawConfig
from thaw.datasets import SPLITS, atomic_output, file_md5, stream_md5
from thaw.errors import UserError
from thaw.parse import json_value

MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")  # a DVC object id: what a recorded digest must be before it becomes a path
NO_INPUTS = (
    "no dataset inputs logged by a run of this version (not registered by thaw?): its data tags cannot be "
    "checked against a record"
)


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


def verify_lineage(
    cfg: ThawConfig, tags: dict[str, str], logged: dict[str, dict[str, str] | None] | None = None
) -> LineageCheck:
    """Re-verify every recorded dataset digest against the DVC remote(s) that hold it.

    ``logged``: what the version's run logged as dataset inputs (``logged_data``), which
    no one can edit afterwards; the tags are read against it first, and the raw listing
    must hold each raw file the run logged; a run that logged none ({}) is a problem. None:
    the tags alone are checked."""
    from tasks.tracking.dataset_inputs import tag_disagreements

    problems = tag_disagreements(tags, logged or {})
    if logged == {}:  # what its tags say is all there is: any of them may have been written by hand
        problems.append(NO_INPUTS)
    notes: tuple[str, ...] = ()
    url = tags.get("thaw.dvc_remote")
    if not url:
        return LineageCheck((*problems, "no DVC remote recorded on the version"), notes)
    remote = open_remote(cfg, url)
    for split in SPLITS:
        md5 = tags.get(f"thaw.curated.{split}.md5")
        if md5 is None:
            problems.append(f"no {split} digest recorded")
        elif not MD5.fullmatch(md5):
            problems.append(f"the {split} digest recorded is not an md5: {md5[:40]!r}")
        elif not remote.has(md5):
            problems.append(f"{split} md5 {md5} is missing from the remote {url}")
        elif remote.md5_of(md5) != md5:
            problems.append(f"{split} object {remote.object_path(md5)} does not hash to {md5}")
    raw, policy = tags.get("thaw.raw.md5", ""), tags.get("thaw.raw.policy", "same_remote")
    if policy == "local":
        note = f"raw data kept local by policy (raw_policy: local): md5 {raw[:40]} is recorded, not re-checked"
        return LineageCheck(tuple(problems), (*notes, note))
    raw_url = tags.get("thaw.raw.remote") or url
    raw_remote = remote if raw_url == url else open_remote(cfg, raw_url)
    files = {k.removeprefix("raw."): f["md5"] for k, f in (logged or {}).items() if f and k.startswith("raw.")}
    problems += _raw_problems(raw_remote, raw, files)
    return LineageCheck(tuple(problems), notes)


def _raw_problems(remote: DvcRemote, raw: str, files: dict[str, str]) -> list[str]:
    """What is wrong with raw listing ``raw`` in ``remote``; ``files``: the md5 of each raw
    split the run logged, which the listing must hold."""
    if raw and not MD5.fullmatch(raw):
        return [f"the raw data digest recorded is not an md5: {raw[:40]!r}"]
    if not raw or not remote.has(raw):
        return [f"raw data md5 {raw} is missing from the remote {remote.url}"]
    if not raw.endswith(".dir"):
        return []
    try:
        entries = [e for e in json_value(remote.read_text(raw)) if isinstance(e, dict)]
    except (ValueError, TypeError):
        return [f"raw data listing {raw} in {remote.url} is not a DVC directory listing"]
    listed = {str(entry.get("md5")) for entry in entries}
    return [
        f"raw file {str(e.get('relpath'))[:200]} (md5 {str(e.get('md5'))[:40]}) is missing from the remote {remote.url}"
        for e in entries
        if not MD5.fullmatch(str(e.get("md5"))) or not remote.has(e["md5"])
    ] + [
        f"the raw {split} file the run logged (md5 {md5}) is not in the raw data listing {raw}"
        for split, md5 in sorted(files.items())
        if md5 not in listed
    ]


def checked_tags(cfg: ThawConfig, mv) -> dict[str, str]:
    """The tags of model version ``mv``, refused (UserError) when a lineage tag differs
    from what its run logged: the data restored from them is the data it learned from."""
    from tasks.tracking.client import client_for
    from tasks.tracking.dataset_inputs import logged_data, tag_disagreements

    problems = tag_disagreements(mv.tags, logged_data(client_for(cfg), mv.run_id))
    if problems:
        raise UserError(
            f"{mv.name} v{mv.version}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return dict(mv.tags)


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
    if not MD5.fullmatch(md5):
        raise UserError(f"the model version's {split} digest is not an md5: {md5[:40]!r}")
    target = dest / split_file_name(tags, split)
    remote = remote or open_remote(cfg, url)
    if not remote.has(md5):
        raise UserError(f"{split} data (md5 {md5}) is not in the DVC remote {url}")
    if target.is_file() and file_md5(target) == md5:
        return target  # already restored, and still exactly what was recorded
    with atomic_output(target) as tmp:
        remote.download(md5, tmp)
        if file_md5(tmp) != md5:
            raise UserError(f"{remote.object_path(md5)}: content does not match the recorded md5 {md5}")
    return target


def split_file_name(tags: dict[str, str], split: str) -> str:
    """The file name a split is restored as: the last part of its recorded path, refused
    (UserError) when that names no file (a path tag is whoever edited it last's)."""
    path = tags.get(f"thaw.curated.{split}.path") or ""
    if Path(path).name in ("", ".", ".."):
        raise UserError(f"the model version's {split} path names no file: {path[:80]!r}")
    return Path(path).name


def restore_data(cfg: ThawConfig, ref: str, dest: Path, replace: bool = True) -> dict[str, Path]:
    """Restore train/validation/test of a model version into ``dest``, byte-identical.
    With ``replace`` False, a file in ``dest`` of a split's name and other bytes (the
    user's own ``train.csv``, another version's) is refused before anything is written."""
    from tasks.tracking.client import resolve_version

    mv = resolve_version(cfg, ref)
    tags = checked_tags(cfg, mv)
    if not tags.get("thaw.dvc_remote"):
        raise UserError(f"{ref}: the model version records no DVC remote")
    if not replace:
        differing = [
            str(target)
            for split in SPLITS
            if f"thaw.curated.{split}.path" in tags
            and (target := dest / split_file_name(tags, split)).exists()
            and not (target.is_file() and file_md5(target) == tags.get(f"thaw.curated.{split}.md5"))
        ]
        if differing:
            raise UserError(
                f"{', '.join(differing)}: already there, and not {ref}'s bytes; restore into another directory, "
                "or pass --replace to overwrite"
            )
    remote = open_remote(cfg, tags["thaw.dvc_remote"])
    return {split: restore_split(cfg, tags, split, dest, remote) for split in SPLITS}
