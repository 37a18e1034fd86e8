"""The bench's like-for-like comparison: the plain baseline is scored on the test rows the
run's versioned curated split kept, read through the summary's lineage, which is input:
its path is held to the checkout and its bytes to the recorded md5."""

from __future__ import annotations

import pytest

from bench.ladder import curated_test_rows
from thaw.datasets import DataChanged, file_md5


def _run(tmp_path, kept_ids: list[str], path: str = "datasets/m/abc/test.csv") -> dict:
    split = tmp_path / "datasets" / "m" / "abc" / "test.csv"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("id,text,label\n" + "".join(f"{i},text of {i},a\n" for i in kept_ids), encoding="utf-8")
    tracked = {"path": path, "md5": file_md5(split), "size": split.stat().st_size}
    return {"lineage": {"curated": {"test": tracked}}}


@pytest.mark.parametrize("rows", [4, 2000])
def test_the_baseline_is_scored_on_exactly_the_rows_thaw_kept(tmp_path, rows):
    test_ids = [f"test-{i}" for i in range(rows)]
    kept = test_ids[1::2]
    assert curated_test_rows(tmp_path, _run(tmp_path, kept), test_ids) == list(range(1, rows, 2))


def test_a_curated_id_the_test_file_lacks_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="1 curated test ids are not in the test file"):
        curated_test_rows(tmp_path, _run(tmp_path, ["test-0", "other-9"]), ["test-0", "test-1"])


def test_a_path_out_of_the_checkout_or_changed_bytes_are_refused(tmp_path):
    summary = _run(tmp_path, ["test-0"], path="../../etc/passwd")
    with pytest.raises(ValueError, match="outside"):
        curated_test_rows(tmp_path, summary, ["test-0"])
    summary = _run(tmp_path, ["test-0"])
    (tmp_path / "datasets" / "m" / "abc" / "test.csv").write_text("id,text,label\ntest-1,x,a\n", encoding="utf-8")
    with pytest.raises(DataChanged):
        curated_test_rows(tmp_path, summary, ["test-0", "test-1"])
