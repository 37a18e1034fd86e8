"""Where `thaw predict` writes, checked before any row is predicted: the name says the
format, and the predictions never replace the file they are of."""

from __future__ import annotations

import os

import pytest

from tasks.serving.batch_prediction import output_format
from thaw.errors import UserError


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("text\nI lost my card\n", encoding="utf-8")
    return path


def test_the_name_says_the_format(source, tmp_path):
    assert output_format(source, tmp_path / "predictions.csv") == "csv"
    assert output_format(source, tmp_path / "out" / "Predictions.PARQUET") == "parquet"  # made when written
    with pytest.raises(UserError, match=r"predictions\.tsv: a \.csv or \.parquet file name"):
        output_format(source, tmp_path / "predictions.tsv")
    with pytest.raises(UserError, match=r"--output .*/predictions: a \.csv or \.parquet file name"):
        output_format(source, tmp_path / "predictions")


def test_the_input_file_under_any_of_its_names_is_refused(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.link(source, tmp_path / "same.csv")
    (tmp_path / "link.csv").symlink_to(source)
    for target in (source, tmp_path / "." / "new.csv", tmp_path / "same.csv", tmp_path / "link.csv"):
        with pytest.raises(UserError, match="is the input file, which the predictions would replace"):
            output_format(source, target)
    assert source.read_text(encoding="utf-8") == "text\nI lost my card\n"


def test_a_directory_is_refused(source, tmp_path):
    with pytest.raises(UserError, match="is a directory; give a file name"):
        output_format(source, tmp_path)
