"""Restore and re-verify data from the DVC remote using only what a model version records.

DVC 3 stores every object content-addressed under ``files/md5/<2>/<30>`` in a remote;
a directory is an object ``<md5>.dir`` listing its files. With the md5 and the remote
recorded on the model version, the exact bytes come back even after the workspace copy
and the local DVC cache are gone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

from tasks.ingest import file_md5
from thaw.config import ThawConfig
from thaw.errors import UserError

SPLITS = ("train", "validation", "test")


def _remote_root(remote: str) -> Path:
    parsed = urlparse(remote)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else remote)
    raise UserError(f"DVC remote {remote!r}: thaw restores from local or mounted remotes; "
                    "for other remotes run `dvc pull` on the recorded .dvc files")


def remote_object(remote: str, md5: str) -> Path:
    """Path of the object with this md5 in a local DVC 3 remote."""
    return _remote_root(remote) / "files" / "md5" / md5[:2] / md5[2:]


def verify_lineage(cfg: ThawConfig, tags: dict[str, str]) -> list[str]:
    """Problems found re-verifying every recorded dataset digest against the remote (empty: all good)."""
    remote = tags.get("thaw.dvc_remote")
    if not remote:
        return ["no DVC remote recorded on the version"]
    problems = []
    for split in SPLITS:
        md5 = tags.get(f"thaw.curated.{split}.md5")
        if md5 is None:
            problems.append(f"no {split} digest recorded")
            continue
        obj = remote_object(remote, md5)
        if not obj.is_file():
            problems.append(f"{split} md5 {md5} is missing from the remote {remote}")
        elif file_md5(obj) != md5:
            problems.append(f"{split} object {obj} does not hash to {md5}")
    raw = tags.get("thaw.raw.md5", "")
    listing = remote_object(remote, raw)
    if not listing.is_file():
        problems.append(f"raw data md5 {raw} is missing from the remote {remote}")
    elif raw.endswith(".dir"):
        for entry in json.loads(listing.read_text(encoding="utf-8")):
            if not remote_object(remote, entry["md5"]).is_file():
                problems.append(f"raw file {entry['relpath']} (md5 {entry['md5']}) is missing from the remote")
    return problems


def restore_split(cfg: ThawConfig, tags: dict[str, str], split: str, dest: Path) -> Path:
    """Copy the recorded ``split`` file from the remote into ``dest`` and check its md5."""
    md5, path = tags.get(f"thaw.curated.{split}.md5"), tags.get(f"thaw.curated.{split}.path")
    if not md5 or not path:
        raise UserError(f"the model version records no {split} dataset")
    obj = remote_object(tags["thaw.dvc_remote"], md5)
    if not obj.is_file():
        raise UserError(f"{split} data (md5 {md5}) is not in the DVC remote {tags['thaw.dvc_remote']}")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / Path(path).name
    tmp = target.with_name(target.name + ".partial")
    shutil.copyfile(obj, tmp)
    if file_md5(tmp) != md5:
        tmp.unlink()
        raise UserError(f"{obj}: content does not match the recorded md5 {md5}")
    tmp.replace(target)
    return target


def restore_data(cfg: ThawConfig, ref: str, dest: Path) -> dict[str, Path]:
    """Restore train/validation/test of a model version into ``dest``, byte-identical."""
    from tasks.lineage import resolve_version

    mv = resolve_version(cfg, ref)
    return {split: restore_split(cfg, mv.tags, split, dest) for split in SPLITS}
