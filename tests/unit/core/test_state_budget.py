"""The state directory's caches and checkpoints kept within a budget: least recently used out."""

from __future__ import annotations

import os
import time
from pathlib import Path

from thaw.content_cache import COMPLETE, ContentCache
from thaw.state_budget import disk_bytes, prune, state_entries, state_in_use

NOW = 1_800_000_000.0
DAY = 24 * 3600


def _entry(path: Path, size: int, used: float, marker: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(b"x" * size)
    if marker:
        (path / COMPLETE).write_text("{}")
        os.utime(path / COMPLETE, (used, used))
    os.utime(path, (used, used))
    return path


def _state(tmp_path: Path) -> Path:
    """Two feature entries, a curation entry, two fits' checkpoints (one of two phases),
    an old run's directory, and what the budget never counts: the MLflow store."""
    state = tmp_path / ".thaw"
    _entry(state / "cache" / "features" / "old", 4000, NOW - 3 * DAY)
    _entry(state / "cache" / "features" / "new", 4000, NOW - 60)  # used by this run
    _entry(state / "cache" / "curation" / "mid", 1000, NOW - 2 * DAY)
    for phase, used in (("train_embeddings", NOW - 5 * DAY), ("fine_tune", NOW - 4 * DAY)):
        _entry(state / "checkpoints" / f"aaaa-{phase}" / "epoch-0003", 3000, used)
    _entry(state / "checkpoints" / "bbbb-fine_tune" / "epoch-0001", 2000, NOW - 1 * DAY)
    (state / "mlflow.db").write_bytes(b"y" * 50_000)
    _entry(state / "runs" / "r1", 50_000, NOW - 9 * DAY, marker=False)
    return state


def test_entries_are_cache_entries_fits_whose_phases_go_together_and_run_directories(tmp_path):
    state = _state(tmp_path)
    found = {(e.kind, e.name): e for e in state_entries(state)}
    assert set(found) == {
        ("features", "old"),
        ("features", "new"),
        ("curation", "mid"),
        ("checkpoints", "aaaa"),
        ("checkpoints", "bbbb"),
        ("runs", "r1"),
    }
    fit = found["checkpoints", "aaaa"]
    assert len(fit.paths) == 2 and fit.used == NOW - 4 * DAY  # its newest phase's epoch
    assert fit.size == 2 * (3000 + 2)  # data and marker of both phases
    assert found["runs", "r1"].used == NOW - 9 * DAY


def test_the_least_recently_used_go_first_until_the_rest_fits_and_this_run_s_stay(tmp_path):
    state = _state(tmp_path)
    pruned = prune(state, budget_bytes=7100, since=NOW - 3600, now=NOW)
    # oldest first: the old run, the fit aaaa (both phases), then features/old; 7,006 bytes are left
    assert [(e.kind, e.name) for e in pruned.removed] == [("runs", "r1"), ("checkpoints", "aaaa"), ("features", "old")]
    assert not list((state / "checkpoints").glob("aaaa-*")) and not (state / "cache" / "features" / "old").exists()
    assert (state / "cache" / "curation" / "mid").is_dir() and (state / "checkpoints" / "bbbb-fine_tune").is_dir()
    assert pruned.after == 7006 and not pruned.errors
    # nothing renamed out of the way is left behind, and what the budget does not count is untouched
    assert not list(state.rglob(".*evicted*")) and not list((state / "runs").iterdir())
    assert (state / "mlflow.db").stat().st_size == 50_000
    assert "removed 3 least recently used entries" in pruned.describe()


def test_what_this_run_used_stays_even_over_the_budget(tmp_path):
    state = _state(tmp_path)
    pruned = prune(state, budget_bytes=10, since=NOW - 3600, now=NOW)
    assert [e.name for e in state_entries(state)] == ["new"]
    assert pruned.after == 4002 and pruned.protected == 4002
    assert "over the budget" in pruned.describe() and "used since" in pruned.describe()


def test_a_run_holding_the_state_stops_any_other_from_pruning_it(tmp_path):
    state = _state(tmp_path)
    with state_in_use(state):  # another run, mid-flight (its own open file: its own lock)
        pruned = prune(state, budget_bytes=0, since=NOW, now=NOW)
    assert pruned.busy and not pruned.removed and "another run" in pruned.describe()
    assert len(state_entries(state)) == 6
    assert prune(state, budget_bytes=0, since=NOW, now=NOW).removed  # once it has ended


def test_staging_left_by_a_killed_writer_goes_once_a_day_old(tmp_path):
    state = _state(tmp_path)
    dead = _entry(state / "cache" / "features" / ".old.k3j2.partial", 500, NOW - 2 * DAY, marker=False)
    live = _entry(state / "checkpoints" / "bbbb-fine_tune" / ".epoch-0002.x7.partial", 500, NOW - 60, marker=False)
    pruned = prune(state, budget_bytes=10**9, since=NOW - 3600, now=NOW)
    assert not dead.exists() and live.is_dir()
    assert pruned.leftovers == 500 and not pruned.removed


def test_a_cache_hit_counts_as_a_use(tmp_path):
    state = _state(tmp_path)
    cache = ContentCache(state / "cache" / "features")
    before = time.time()
    assert cache.get("old") is not None and cache.get("missing") is None
    (old,) = [e for e in state_entries(state) if e.name == "old"]
    assert old.used >= before - 1


def test_pruning_where_no_run_has_been_makes_nothing(tmp_path):
    pruned = prune(tmp_path / ".thaw", budget_bytes=0, since=NOW, now=NOW)
    assert pruned.before == 0 and not pruned.removed and not (tmp_path / ".thaw").exists()


def test_a_link_to_elsewhere_is_neither_counted_nor_emptied(tmp_path):
    state = _state(tmp_path)
    outside = _entry(tmp_path / "team-share" / "precious", 9000, NOW - 30 * DAY)  # has a marker, looks like an entry
    (state / "cache" / "features" / "linked").symlink_to(outside)
    (state / "cache" / "shared").symlink_to(outside.parent)
    (state / "runs" / "linked-run").symlink_to(outside)
    names = {e.name for e in state_entries(state)}
    assert "linked" not in names and "precious" not in names and "linked-run" not in names
    prune(state, budget_bytes=0, since=NOW + 1, now=NOW + 2 * DAY)
    assert (outside / "data.bin").stat().st_size == 9000 and (outside / COMPLETE).is_file()
    assert not state_entries(state)  # everything of the state's own went


def test_disk_bytes_counts_a_link_itself_unless_asked_to_follow_it(tmp_path):
    # a Hugging Face cache snapshot: its files are links to blobs; the latency report
    # counts the blobs, the state budget never counts what lives elsewhere
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"w" * 5000)
    snapshot = tmp_path / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    (snapshot / "config.json").write_text("{}")
    assert disk_bytes(snapshot / "model.safetensors", follow_links=True) == 5000
    assert disk_bytes(snapshot, follow_links=True) == 5002
    assert disk_bytes(snapshot / "model.safetensors") < 5000
    assert disk_bytes(snapshot) < 5000
    assert disk_bytes(tmp_path / "gone", follow_links=True) == disk_bytes(tmp_path / "gone") == 0


def test_disk_bytes_never_enters_a_linked_directory(tmp_path):
    # a model directory from someone else: its adapter/ holds a link to a large tree and
    # a link back to itself; following file links must not walk either
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "big.bin").write_bytes(b"b" * 9000)
    model = tmp_path / "model" / "adapter"
    model.mkdir(parents=True)
    (model / "adapter.safetensors").write_bytes(b"a" * 100)
    (model / "tree").symlink_to(elsewhere, target_is_directory=True)
    (model / "loop").symlink_to(model, target_is_directory=True)
    assert disk_bytes(model, follow_links=True) == 100
    assert disk_bytes(model / "tree", follow_links=True) == 9000  # asked for by name: measured
