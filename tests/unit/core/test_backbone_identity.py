"""A backbone's identity is every file of its snapshot: what changes it, and what a
version recorded by an earlier thaw (five named files) still loads with."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from thaw.errors import UserError
from thaw.modeling import BackboneRef, directory_digest, legacy_identity_digest, locate_backbone


def _snapshot(root: Path) -> Path:
    for name, body in {
        "config.json": "{}",
        "model-00001-of-00002.safetensors": "weights one",
        "model-00002-of-00002.safetensors": "weights two",
        "tokenizer_config.json": '{"do_lower_case": true}',
        "merges.txt": "a b",
        "vocab.json": "{}",
        "1_Pooling/config.json": "{}",
        ".git/HEAD": "ref",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "changed",
    ["model-00002-of-00002.safetensors", "tokenizer_config.json", "merges.txt", "vocab.json", "1_Pooling/config.json"],
)
def test_any_file_of_the_snapshot_changes_the_digest(tmp_path, changed):
    root = _snapshot(tmp_path / "m")
    before = directory_digest(root)
    (root / changed).write_text("something else", encoding="utf-8")
    assert directory_digest(root) != before


def test_tool_state_does_not_and_a_directory_without_weights_is_refused(tmp_path):
    root = _snapshot(tmp_path / "m")
    before = directory_digest(root)
    (root / ".git" / "HEAD").write_text("another ref", encoding="utf-8")
    assert directory_digest(root) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="no model weights"):
        directory_digest(empty)


def test_a_version_recorded_by_five_files_still_loads_and_a_changed_one_does_not(tmp_path, caplog):
    root = _snapshot(tmp_path / "m")
    (root / "model.safetensors").write_text("weights", encoding="utf-8")
    legacy = BackboneRef("tiny", f"path:{root}", legacy_identity_digest(root))
    with caplog.at_level(logging.WARNING):
        assert locate_backbone(legacy) == root
    assert "hashed five of its files" in caplog.text
    assert locate_backbone(BackboneRef("tiny", f"path:{root}", directory_digest(root))) == root
    (root / "model.safetensors").write_text("other weights", encoding="utf-8")
    with pytest.raises(UserError, match="does not match the recorded revision"):
        locate_backbone(legacy)


def test_a_recorded_package_source_imports_only_thaws_own_backbone_packages(monkeypatch):
    # model.json and registry tags are input: "package:<module>" must not import a module
    # someone else named (importing runs its top-level code)
    import sys

    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(UserError, match="does not ship backbones"):
        locate_backbone(BackboneRef("x", "package:this", "0" * 64), verify=False)
    assert "this" not in sys.modules
