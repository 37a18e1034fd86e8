from pathlib import Path

import pandas as pd
import pytest

from tasks.ingest import read_labelled_table
from thaw.datasets import ColumnMap
from thaw.errors import UserError

COLS = ColumnMap(text="text", label="label", id="id")


def _csv(tmp_path: Path, body: bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


def test_reads_csv_jsonl_and_parquet_alike(tmp_path: Path):
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["hi", "yo"], "label": ["x", "y"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        out = read_labelled_table(tmp_path / name, COLS)
        assert out.to_dict("list") == {"id": ["a", "b"], "text": ["hi", "yo"], "label": ["x", "y"]}


def test_missing_column_is_named(tmp_path: Path):
    path = _csv(tmp_path, b"id,body,label\n1,hi,x\n")
    with pytest.raises(UserError, match=r"d.csv: column 'text' not found \(columns are: id, body, label\)"):
        read_labelled_table(path, COLS)


@pytest.mark.parametrize(
    "body,message",
    [
        (b"", "file is empty"),
        (b"id,text,label\n", "no data rows"),
        (b"id,text,label\n1,caf\xe9,x\n", "line 2 is not valid UTF-8"),
        (b'id,text,label\n1,"a,b,c\n', "malformed CSV"),
    ],
)
def test_bad_files_are_refused_with_the_place(tmp_path: Path, body: bytes, message: str):
    with pytest.raises(UserError, match=message):
        read_labelled_table(_csv(tmp_path, body), COLS)


def test_unsupported_type_and_missing_file(tmp_path: Path):
    with pytest.raises(UserError, match="unsupported file type '.xlsx'"):
        read_labelled_table(_csv(tmp_path, b"x", "d.xlsx"), COLS)
    with pytest.raises(UserError, match="file not found"):
        read_labelled_table(tmp_path / "none.csv", COLS)


def test_nulls_become_empty_and_ids_are_generated(tmp_path: Path):
    path = _csv(tmp_path, b"text,label\nhello,\n,x\n")
    out = read_labelled_table(path, ColumnMap(text="text", label="label", id=None))
    assert out["label"].tolist() == ["", "x"] and out["text"].tolist() == ["hello", ""]
    assert out["id"].tolist() == ["d:1", "d:2"]


def test_repeated_ids_are_refused(tmp_path: Path):
    with pytest.raises(UserError, match="repeats the value '1'"):
        read_labelled_table(_csv(tmp_path, b"id,text,label\n1,a,x\n1,b,y\n"), COLS)
