"""Two runs of one model never share curated files: each is versioned in a directory named
by its content, and a run reading a file that changed under it stops (md5 checked)."""

from __future__ import annotations

import pytest

from thaw.config import ThawConfig
from thaw.datasets import DataChanged, file_md5


def _staged(tmp_path, name: str, rows: list[str]) -> dict:
    staged = {}
    for split in ("train", "validation", "test"):
        path = tmp_path / name / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "id,text,label\n" + "".join(f"{split}-{i},{r},a\n" for i, r in enumerate(rows)), encoding="utf-8"
        )
        staged[split] = path
    return staged


def test_a_second_run_versions_beside_the_first_and_never_rewrites_its_files(workspace, tmp_path):
    from tasks.versioning.snapshots import version_curated_data

    cfg = ThawConfig.model_validate({"workspace": str(workspace), "model_name": "tickets"})
    first = version_curated_data.fn(_staged(tmp_path, "one", ["hello", "world"]), cfg)
    before = {s: file_md5(first.local_path(cfg.root, s)) for s in first.files}
    second = version_curated_data.fn(_staged(tmp_path, "two", ["other", "data", "here"]), cfg)
    assert first.dvc_file != second.dvc_file  # datasets/tickets/<digest> each
    assert {s: file_md5(first.local_path(cfg.root, s)) for s in first.files} == before
    assert first.read(cfg.root, "train").texts == ["hello", "world"]
    again = version_curated_data.fn(_staged(tmp_path, "one-again", ["hello", "world"]), cfg)
    assert again == first  # the same content is the same directory, left as it was


def test_a_file_changed_under_a_run_is_refused_not_read(workspace, tmp_path):
    from tasks.versioning.snapshots import version_curated_data

    cfg = ThawConfig.model_validate({"workspace": str(workspace), "model_name": "tickets"})
    version = version_curated_data.fn(_staged(tmp_path, "one", ["hello", "world"]), cfg)
    path = version.local_path(cfg.root, "train")
    path.chmod(0o644)
    path.write_text("id,text,label\nx,replaced,b\n", encoding="utf-8")
    with pytest.raises(DataChanged, match="train.csv: md5 .* is not the .* this run versioned"):
        version.read(cfg.root, "train")
