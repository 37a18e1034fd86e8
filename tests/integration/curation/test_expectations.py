"""The Great Expectations suites on curated splits: what halts a run, said per split."""

from __future__ import annotations

import pandas as pd
import pytest

from thaw.config import ThawConfig

pytestmark = pytest.mark.integration


def _split(labels: list[str]) -> pd.DataFrame:
    texts = [f"message number {i} about the order" for i in range(len(labels))]
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "text": texts, "label": labels})


@pytest.mark.parametrize("rows_per_class", [2, 2000])
def test_one_class_halts_with_a_line_that_says_so(tmp_path, rows_per_class):
    from tasks.curation.expectations import validate_frames

    cfg = ThawConfig.model_validate({"curation": {"expectations": {"min_rows": 1, "min_examples_per_class": 1}}})
    one = {"train": _split(["refund"] * rows_per_class), "test": _split(["refund"] * 2)}
    ok, failures, _, _ = validate_frames(one, cfg, tmp_path / "one")
    assert not ok and "train_class_counts: 1 class(es) in train; a classifier needs at least 2" in failures
    two = {"train": _split(["refund", "login"] * rows_per_class), "test": _split(["refund", "login"])}
    ok, failures, _, _ = validate_frames(two, cfg, tmp_path / "two")
    assert ok, failures
