"""The one cache mechanism: key, staging, atomic rename, hit."""

from __future__ import annotations

import pytest

from thaw.content_cache import COMPLETE, ContentCache, content_key, directory_written_whole


def test_an_entry_is_a_hit_only_once_written_whole(tmp_path):
    cache = ContentCache(tmp_path / "cache")
    assert cache.get("k") is None
    with cache.put("k") as staging:
        (staging / "a.txt").write_text("x")
        assert cache.get("k") is None  # not visible while being written
    entry = cache.get("k")
    assert entry == tmp_path / "cache" / "k" and (entry / "a.txt").read_text() == "x"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k"]  # no staging left


def test_a_failed_write_leaves_neither_entry_nor_staging(tmp_path):
    cache = ContentCache(tmp_path / "cache")
    with pytest.raises(RuntimeError), cache.put("k") as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert cache.get("k") is None and not list((tmp_path / "cache").iterdir())


def test_two_writers_of_one_entry_never_share_a_staging_name_and_the_first_stays(tmp_path):
    cache = ContentCache(tmp_path / "cache")
    with cache.put("k") as first:
        with cache.put("k") as second:
            assert first != second
            (second / "who").write_text("second")
        (first / "who").write_text("first")
    assert (cache.get("k") / "who").read_text() == "second"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k"]


def test_a_leftover_without_its_marker_is_replaced(tmp_path):
    final = tmp_path / "k"
    final.mkdir()
    (final / "stale").write_text("from a killed writer of an older layout")
    with directory_written_whole(final) as staging:
        (staging / "fresh").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == [COMPLETE, "fresh"]


def test_the_key_carries_settings_libraries_and_precision():
    base = content_key("features", {"a": 1, "b": [1, 2]}, ("numpy",), "cpu-fp32")
    assert base == content_key("features", {"b": [1, 2], "a": 1}, ("numpy",), "cpu-fp32")  # order does not matter
    assert base != content_key("features", {"a": 2, "b": [1, 2]}, ("numpy",), "cpu-fp32")
    assert base != content_key("features", {"a": 1, "b": [1, 2]}, ("numpy",), "cuda-bf16-autocast")
    assert base != content_key("features", {"a": 1, "b": [1, 2]}, ("numpy", "torch"), "cpu-fp32")
    assert base != content_key("heads", {"a": 1, "b": [1, 2]}, ("numpy",), "cpu-fp32")


def test_a_library_upgrade_changes_the_key(monkeypatch):
    from thaw import content_cache

    before = content_key("features", {"a": 1}, ("torch",))
    monkeypatch.setattr(content_cache, "library_versions", lambda names: dict.fromkeys(names, "99.0"))
    assert content_key("features", {"a": 1}, ("torch",)) != before
