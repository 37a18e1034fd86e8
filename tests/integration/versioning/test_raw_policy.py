"""Raw inputs hold the PII curation removes: where they go is a policy (with the curated
splits, to a remote of their own, or nowhere), and the lineage re-check says what it
could and could not check. Real DVC in a temporary git repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projects import lineage_tags
from thaw.config import ThawConfig
from thaw.errors import UserError

pytestmark = pytest.mark.integration


def _objects(remote: Path) -> set[str]:
    return {p.parent.name + p.name for p in remote.rglob("*") if p.is_file()} if remote.exists() else set()


def _version(workspace: Path, **versioning) -> tuple[ThawConfig, dict[str, str]]:
    from tasks.versioning.snapshots import version_curated_data, version_raw_data

    (workspace / "data").mkdir(exist_ok=True)
    raw = workspace / "data" / "raw.csv"
    raw.write_text("id,text,label\n1,call Ana on +44 20 7946 0958,x\n", encoding="utf-8")
    cfg = ThawConfig.model_validate(
        {"model_name": "m", "workspace": str(workspace), "data": {"train": str(raw)}, "versioning": versioning}
    )
    staged = workspace / "staged"
    staged.mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        (staged / f"{split}.csv").write_text(f"id,text,label\n{split},<PERSON_ab12cd>,x\n", encoding="utf-8")
    raw_version = version_raw_data.fn(cfg)
    curated = version_curated_data.fn({s: staged / f"{s}.csv" for s in ("train", "validation", "test")}, cfg)
    return cfg, lineage_tags(cfg, raw_version, curated)


def _raw_md5(tags: dict[str, str]) -> str:
    md5 = tags["thaw.raw.md5"].removesuffix(".dir")
    return md5


def test_raw_data_goes_with_the_splits_by_default(workspace):
    from tasks.versioning.restore import verify_lineage

    cfg, tags = _version(workspace)
    assert _raw_md5(tags) + ".dir" in _objects(workspace / ".dvcstore")
    check = verify_lineage(cfg, tags)
    assert check.problems == () and check.notes == ()


def test_raw_data_goes_only_to_its_own_remote(workspace, tmp_path):
    from tasks.versioning.restore import verify_lineage

    raw_remote = tmp_path / "raw-remote"
    cfg, tags = _version(workspace, raw_policy="separate_remote", raw_remote_url=str(raw_remote))
    assert _raw_md5(tags) + ".dir" in _objects(raw_remote)
    assert _raw_md5(tags) + ".dir" not in _objects(workspace / ".dvcstore")
    assert tags["thaw.raw.remote"] == str(raw_remote)
    assert verify_lineage(cfg, tags).problems == ()
    for obj in raw_remote.rglob("*"):  # the raw remote loses it: the re-check says so
        if obj.is_file():
            obj.unlink()
    assert any("raw data md5" in p for p in verify_lineage(cfg, tags).problems)


def test_local_raw_data_is_never_pushed_and_the_check_says_what_it_skipped(workspace):
    from tasks.versioning.restore import verify_lineage

    cfg, tags = _version(workspace, raw_policy="local")
    assert _raw_md5(tags) + ".dir" not in _objects(workspace / ".dvcstore")
    assert tags["thaw.raw.remote"] == ""
    check = verify_lineage(cfg, tags)
    assert check.problems == () and check.notes and "not re-checked" in check.notes[0]


def test_a_separate_raw_remote_needs_its_url():
    with pytest.raises(UserError, match="raw_remote_url is set exactly when raw_policy is separate_remote"):
        from thaw.config import load_config

        load_config(None, {"versioning.raw_policy": "separate_remote"})
