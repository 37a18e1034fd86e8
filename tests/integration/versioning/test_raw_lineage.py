"""Raw lineage names the exact bytes a run read: inputs of one name from two places are
both versioned under their own digest, each run's data.dvc holds the inputs it read (not
every copy earlier runs imported), and the README's erasure procedure leaves no object of
the erased file in the remote while the new version's lineage verifies. Real DVC."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projects import lineage_tags
from thaw.config import ThawConfig
from thaw.datasets import file_md5

pytestmark = pytest.mark.integration


def _objects(remote: Path) -> set[str]:
    return {p.parent.name + p.name for p in remote.rglob("*") if p.is_file()} if remote.exists() else set()


def _write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,text,label\n" + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return path


def _run(workspace: Path, **data: Path) -> tuple[ThawConfig, dict[str, str]]:
    """Version the raw inputs and a curated version, as a run does; the lineage tags."""
    from tasks.versioning.snapshots import version_curated_data, version_raw_data

    cfg = ThawConfig.model_validate({"model_name": "m", "workspace": str(workspace), "data": data})
    raw = version_raw_data.fn(cfg)
    staged = workspace.parent / f"staged-{raw.md5[:8]}"
    for split in ("train", "validation", "test"):
        _write(staged / f"{split}.csv", [f"{split}-{raw.md5[:6]},<PERSON_ab12cd> asked,x"])
    curated = version_curated_data.fn({s: staged / f"{s}.csv" for s in ("train", "validation", "test")}, cfg)
    return cfg, lineage_tags(cfg, raw, curated)


def test_two_inputs_of_one_name_are_both_versioned_with_their_own_bytes(workspace, tmp_path):
    train = _write(tmp_path / "a" / "tickets.csv", ["1,where is my parcel,shipping"])
    test = _write(tmp_path / "b" / "tickets.csv", ["2,reset my password,login"])
    _, tags = _run(workspace, train=train, test=test)
    assert (tags["thaw.raw.train.md5"], tags["thaw.raw.test.md5"]) == (file_md5(train), file_md5(test))
    imported = sorted(p.relative_to(workspace / "data").as_posix() for p in (workspace / "data").rglob("*.csv"))
    assert imported == sorted([f"imports/{file_md5(train)}/tickets.csv", f"imports/{file_md5(test)}/tickets.csv"])


def test_erasure_as_the_readme_says_leaves_no_object_of_the_old_raw_file(workspace, tmp_path):
    from tasks.versioning.restore import verify_lineage
    from tasks.versioning.snapshots import run_dvc

    people = _write(tmp_path / "export" / "people.csv", ["1,Ana Lima asked for a refund,refund", "2,order late,ship"])
    _, before = _run(workspace, train=people)
    old = file_md5(people)
    assert old in _objects(workspace / ".dvcstore")
    _write(people, ["2,order late,ship"])  # Ana asked to be erased: her rows go from the raw input
    cfg, after = _run(workspace, train=people)
    assert not (workspace / "data" / "imports" / old).exists()  # this run's data.dvc does not carry the old copy
    run_dvc(workspace, "gc", "--workspace", "--cloud", "--force")
    remaining = _objects(workspace / ".dvcstore")
    assert old not in remaining and before["thaw.raw.md5"] not in remaining
    assert file_md5(people) in remaining
    assert verify_lineage(cfg, after).problems == ()
    assert any("raw data md5" in p for p in verify_lineage(cfg, before).problems)  # said, not hidden


def test_a_run_s_import_is_never_pruned_by_another_run_before_its_dvc_add(workspace, tmp_path, monkeypatch):
    """Two runs on one workspace, one stalled between copying its input into data/ and
    `dvc add`: the other waits for the raw-data lock, so the stalled run's data.dvc still
    holds its input (without the lock, the other run prunes it in that gap)."""
    import json
    import threading
    import time

    from tasks.versioning import snapshots

    inputs = {"A": _write(tmp_path / "a" / "a.csv", ["1,where is my parcel,ship"]),
              "B": _write(tmp_path / "b" / "b.csv", ["2,reset my password,login"])}  # fmt: skip
    real, stalled = snapshots.run_dvc, threading.Event()

    def stall_a_before_add(root, *args):
        if args[:1] == ("add",) and threading.current_thread().name == "A":
            stalled.set()
            time.sleep(2)  # B runs in this gap unless the lock keeps it out
        return real(root, *args)

    monkeypatch.setattr(snapshots, "run_dvc", stall_a_before_add)
    versions, errors = {}, []

    def run(name: str) -> None:
        try:
            data = {"train": str(inputs[name])}
            cfg = ThawConfig.model_validate({"model_name": "m", "workspace": str(workspace), "data": data})
            versions[name] = snapshots.version_raw_data.fn(cfg)
        except Exception as exc:  # reported below, with the other run's outcome
            errors.append((name, exc))

    a = threading.Thread(target=run, args=("A",), name="A")
    a.start()
    assert stalled.wait(60)
    b = threading.Thread(target=run, args=("B",), name="B")
    b.start()
    a.join(120)
    b.join(120)
    assert errors == []
    for name, version in versions.items():
        tree = workspace / ".dvc" / "cache" / "files" / "md5" / version.md5[:2] / version.md5[2:]
        listed = {entry["md5"] for entry in json.loads(tree.read_text())}
        assert file_md5(inputs[name]) in listed, f"run {name}'s data.dvc lost its own input"


def test_data_dvc_holds_exactly_the_files_the_run_read(workspace):
    """An input inside data/ is imported like any other, and a file the user keeps under
    data/ that the run did not read is not versioned (nor pushed) with it."""
    import json

    inside = _write(workspace / "data" / "tickets.csv", ["1,where is my parcel,ship"])
    _write(workspace / "data" / "retrain" / "old-export.csv", ["9,Ana Lima asked,refund"])
    _, tags = _run(workspace, train=inside)
    md5 = tags["thaw.raw.md5"]
    tree = workspace / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    listed = {entry["relpath"] for entry in json.loads(tree.read_text())}
    assert listed == {f"imports/{file_md5(inside)}/tickets.csv"}
    assert tags["thaw.raw.train.md5"] == file_md5(inside)
    assert inside.is_file()  # the user's file stays where it was
