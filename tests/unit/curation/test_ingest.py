import json
from pathlib import Path

import pandas as pd
import pytest

from thaw.datasets import ColumnMap
from thaw.errors import UserError
from thaw.ingest import preflight_inputs, read_labelled_table

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


def test_a_blank_line_or_an_empty_value_is_a_row_so_later_rows_keep_their_numbers(tmp_path: Path):
    """Row numbers name rows in ids, errors and predictions: a blank line between rows,
    or a one-column file's empty value (written ``""``), is a row as a spreadsheet shows
    it. Blank lines after the last row are none."""
    texts = ColumnMap(text="text", label=None, id=None)
    out = read_labelled_table(_csv(tmp_path, b'text\r\nfirst\r\n""\r\n\r\nfourth\r\n\r\n\r\n'), texts)
    assert out["text"].tolist() == ["first", "", "", "fourth"]
    assert out["id"].tolist() == ["d:1", "d:2", "d:3", "d:4"]
    out = read_labelled_table(
        _csv(tmp_path, b"text\tlabel\na\tx\n\nb\ty\n", "d.tsv"), ColumnMap(text="text", label="label", id=None)
    )
    assert out[["text", "label"]].values.tolist() == [["a", "x"], ["", ""], ["b", "y"]]


def test_repeated_ids_are_refused_by_row_never_by_value(tmp_path: Path):
    path = _csv(tmp_path, b"id,text,label\nana@example.com,hi,x\nb,yo,y\nana@example.com,hey,x\n")
    with pytest.raises(UserError) as err:
        read_labelled_table(path, COLS)
    assert "same value in rows 1 and 3" in str(err.value) and "ana@example.com" not in str(err.value)
    with pytest.raises(UserError, match="same value in rows 1 and 2"):
        read_labelled_table(_csv(tmp_path, b"id,text,label\n1,a,x\n1,b,y\n"), COLS)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path):
    path = _csv(tmp_path, "\ufeffid,text,label\n1,hello,x\n".encode())  # Excel's "CSV UTF-8"
    assert read_labelled_table(path, COLS).to_dict("list") == {"id": ["1"], "text": ["hello"], "label": ["x"]}
    preflight_inputs({"train": path}, COLS)


@pytest.mark.parametrize(
    "name,body,message",
    [
        ("d.jsonl", b'42\n{"id": 1, "text": "a", "label": "x"}\n', "line 1 is a number, not a JSON object"),
        ("d.jsonl", b'[{"id": 1, "text": "a", "label": "x"}]\n', "line 1 is an array, not a JSON object"),
        ("d.jsonl", b'{"id": 1, "text": "a", "label": "x"}\n{"id": 2,\n', "line 2 is not valid JSON"),
        ("d.json", b'[{"id": 1, "text": "a", "label": "x"}, "b"]', "item 2 is a string, not a JSON object"),
        # past what the parser reads: a pasted value nested 5,000 deep, a 5,000-digit number
        ("d.jsonl", b'{"id": 1, "text": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "line 1 is not valid JSON"),
        ("d.json", b"[" * 5000 + b"]" * 5000, "not valid JSON \\(arrays or objects nested too deeply"),
        ("d.jsonl", b'{"id": 1, "text": "a", "label": ' + b"7" * 5000 + b"}\n", "line 1 is not valid JSON"),
    ],
)
def test_json_that_is_not_rows_of_objects_is_refused_naming_the_line(tmp_path: Path, name, body, message):
    path = _csv(tmp_path, body, name)
    with pytest.raises(UserError, match=message):
        read_labelled_table(path, COLS)
    with pytest.raises(UserError, match=message.split(",")[0]):
        if "line 2" not in message and "item" not in message:
            preflight_inputs({"train": path}, COLS)
        else:
            read_labelled_table(path, COLS)


def test_a_json_array_of_objects_is_read(tmp_path: Path):
    path = _csv(tmp_path, b'[{"id": 1, "text": "a", "label": "x"}, {"id": 2, "text": "b", "label": "y"}]', "d.json")
    assert read_labelled_table(path, COLS).to_dict("list") == {
        "id": ["1", "2"],
        "text": ["a", "b"],
        "label": ["x", "y"],
    }


def test_typed_json_labels_take_one_spelling_and_are_counted(tmp_path: Path):
    rows = [
        {"id": 1, "text": "a", "label": 1},
        {"id": 2, "text": "b", "label": 1.0},
        {"id": 3, "text": "c", "label": 2},
    ]
    path = _csv(tmp_path, "\n".join(json.dumps(r) for r in rows).encode(), "d.jsonl")
    out = read_labelled_table(path, COLS)
    assert out["label"].tolist() == ["1", "1", "2"] and out.attrs["normalised_labels"] == 1


def test_labels_mixing_booleans_and_numbers_are_refused(tmp_path: Path):
    rows = [{"id": 1, "text": "a", "label": 1}, {"id": 2, "text": "b", "label": True}]
    path = _csv(tmp_path, "\n".join(json.dumps(r) for r in rows).encode(), "d.jsonl")
    with pytest.raises(UserError, match=r"mixes booleans \(row 2: True\) and numbers \(row 1: 1\)"):
        read_labelled_table(path, COLS)


def test_two_columns_of_one_name_are_refused(tmp_path: Path):
    path = _csv(tmp_path, b"id,text,label,text\n1,hi,x,other\n")
    with pytest.raises(UserError, match=r"d.csv: columns 2 and 4 are both named 'text'"):
        read_labelled_table(path, COLS)


@pytest.mark.parametrize(
    ("value", "kind"), [(b"caf\xe9", "bytes"), ({"a": 1}, "an object or a list"), ([1], "an object")]
)
def test_bytes_objects_and_lists_are_not_taken_for_text(tmp_path: Path, value, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b"], "text": pa.array([value, value]), "label": ["x", "y"]})
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(UserError, match=f"row 1: column 'text' holds {kind}"):
        read_labelled_table(tmp_path / "d.parquet", COLS)
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "a", "text": {"k": "v"}, "label": "x"}) + "\n")
    with pytest.raises(UserError, match="row 1: column 'text' holds an object or a list"):
        read_labelled_table(tmp_path / "d.jsonl", COLS)


def test_a_200000_character_field_is_read_whole(tmp_path: Path):
    text = "word " * 40_000
    path = _csv(tmp_path, f"id,text,label\n1,{text},x\n2,short,y\n".encode())
    assert read_labelled_table(path, COLS)["text"].str.len().tolist() == [len(text), 5]


def test_a_file_separated_by_semicolons_or_a_directory_is_told_as_such(tmp_path: Path):
    """Two careless inputs: a spreadsheet's "CSV" written with semicolons (read as one
    column named 'text;label'), and a directory given for the file."""
    semi = _csv(tmp_path, b"text;label\nhallo;a\n")
    with pytest.raises(UserError, match=r"column 'text' not found \(columns are: text;label\); .* by semicolons"):
        preflight_inputs({"train": semi}, ColumnMap(text="text", label="label", id=None))
    with pytest.raises(UserError, match="separated by semicolons"):
        read_labelled_table(semi, ColumnMap(text="text", label="label", id=None))
    wide = _csv(tmp_path, ("a" * 100_000 + "\nx\n").encode(), "wide.csv")
    with pytest.raises(UserError) as caught:
        preflight_inputs({"train": wide}, ColumnMap(text="text", label=None, id=None))
    assert len(str(caught.value)) < 500 and "look separated" not in str(caught.value)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(UserError, match="folder.csv: a directory; give the train file"):
        preflight_inputs({"train": tmp_path / "folder.csv"}, ColumnMap(text="text", label="label", id=None))


def test_a_label_typed_with_other_whitespace_or_composition_is_one_class(tmp_path: Path):
    """A label with a trailing space, a non-breaking space or 'café' written as e and a
    combining accent was a class of its own (on a CLINC150 sample, 'bill_balance ' halted
    the run as a class of one row); each is respelled and counted. Case is kept."""
    labels = ["billing ", "\u00a0billing", "bill\u00a0 balance", "bill balance", "cafe\u0301", "café", "Billing"]
    body = "text,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels))
    out = read_labelled_table(_csv(tmp_path, body.encode()), ColumnMap(text="text", label="label", id=None))
    assert out["label"].tolist() == ["billing", "billing", "bill balance", "bill balance", "café", "café", "Billing"]
    assert out.attrs["normalised_labels"] == 4
    from thaw.request_store import check_label  # served requests' true labels, spelled as training's

    assert check_label("\u00a0bill\u00a0 balance ", "feedback row 1") == "bill balance"


def test_labels_one_spelling_but_for_case_are_grouped_and_allowed_labels_are_spelled_like_the_data():
    from thaw.config import ExpectationsConfig
    from thaw.datasets import case_variants

    labels = ["billing", "Billing", "refund", "BILLING", "Straße", "STRASSE", "ok", "Ok"]
    assert case_variants(labels + labels) == [["BILLING", "Billing", "billing"], ["Ok", "ok"], ["STRASSE", "Straße"]]
    assert case_variants(["a", "b"]) == []
    pasted = ExpectationsConfig(allowed_labels=("bill\u00a0balance ", "cafe\u0301", "Billing"))
    assert pasted.allowed_labels == ("bill balance", "café", "Billing")
    assert ExpectationsConfig().allowed_labels is None


def test_a_header_exported_with_a_trailing_or_no_break_space_is_the_column_and_other_case_is_named(tmp_path: Path):
    """Spreadsheets export 'text ' and 'text\\u00a0'; the error showed 'text , label', the
    space unseen. Such a header is read as the column (whitespace and composition, as for
    labels); a name in other case is not, and the error says which one was meant."""
    from thaw.ingest import has_column, header_names, preflight_inputs, read_columns

    cols = ColumnMap(text="text", label="label", id=None)
    for header in ("text ,label\u00a0", "\u00a0text,label"):
        path = _csv(tmp_path, f"{header}\nhi,x\n".encode(), "spaced.csv")
        preflight_inputs({"train": path}, cols)
        assert read_labelled_table(path, cols).to_dict("list") == {"id": ["spaced:1"], "text": ["hi"], "label": ["x"]}
        assert read_columns(path, ["text"]) == {"text": ["hi"]} and has_column(path, "label")
    cased = _csv(tmp_path, b"Text,text ,label\nhi,yo,x\n", "cased.csv")
    assert read_labelled_table(cased, cols)["text"].tolist() == ["yo"]  # 'Text' is another column
    twice = _csv(tmp_path, b"text ,\xc2\xa0text,label\nhi,yo,x\n", "twice.csv")
    with pytest.raises(
        UserError, match=r"^\S*twice.csv: column 'text' not found \(columns are: 'text ', '\\xa0text', label\)$"
    ):
        header_names(twice, ["text"], ["text ", "\u00a0text", "label"])
    only_case = _csv(tmp_path, b"Text,label\nhi,x\n", "case.csv")
    with pytest.raises(UserError, match=r"did you mean 'Text'\? \(column names are matched with their case\)$"):
        preflight_inputs({"train": only_case}, cols)
    assert not has_column(only_case, "text")


@pytest.mark.parametrize("name,sep", [("d.csv", b","), ("d.tsv", b"\t")])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_a_carriage_return_inside_an_unquoted_field_is_refused_naming_its_line(tmp_path: Path, name, sep, eol):
    # read as RFC 4180 reads it, the CR would end row 2 and its tail would become a row of
    # its own ("2" an id, "b" a text, no label), with nothing said
    rows = [b"id,text,label", b"1,first,a", b"2,pasted\rtail,b", b"3,third,c"]
    path = _csv(tmp_path, eol.join(r.replace(b",", sep) for r in rows) + eol, name)
    with pytest.raises(UserError, match=rf"{name}: line 3 has a carriage return inside an unquoted field"):
        read_labelled_table(path, COLS)


def test_a_quoted_carriage_return_and_a_file_whose_lines_end_in_cr_are_read(tmp_path: Path):
    quoted = _csv(tmp_path, b'id,text,label\r\n1,"pasted\rtail",a\r\n2,b,b\r\n', "quoted.csv")
    assert read_labelled_table(quoted, COLS)["text"].tolist() == ["pasted\rtail", "b"]
    old_mac = _csv(tmp_path, b"id,text,label\r1,one,a\r2,two,b\r", "mac.csv")
    assert read_labelled_table(old_mac, COLS).to_dict("list") == {
        "id": ["1", "2"],
        "text": ["one", "two"],
        "label": ["a", "b"],
    }


def test_json_lines_end_at_newlines_not_at_separators_a_value_may_hold(tmp_path: Path):
    # JSON leaves U+2028, U+2029 and U+0085 unescaped (json.dumps(..., ensure_ascii=False)
    # writes them as they are); str.splitlines would cut a line there
    texts = ["one\u2028two", "three\u2029four\x85five", "six\x0cseven"]
    body = "\r\n".join(json.dumps({"id": i, "text": t, "label": "x"}, ensure_ascii=False) for i, t in enumerate(texts))
    path = _csv(tmp_path, body.encode(), "d.jsonl")
    assert read_labelled_table(path, COLS)["text"].tolist() == texts


@pytest.mark.parametrize(
    "name,body,line",
    [
        ("first.csv", b"id,text,label\n1,Hello, I need help,a\n2,x,b\n", 2),
        ("later.csv", b"id,text,label\n1,x,b\n2,Hello, I need help,a\n", 3),
        ("after_quoted_lines.csv", b'id,text,label\n1,"multi\nline\ntext",a\n2,Hello, there,b\n', 5),
        ("first.tsv", b"id\ttext\tlabel\n1\ttab\there\ta\n", 2),
    ],
)
def test_a_row_with_more_fields_than_the_header_is_refused_naming_its_line(tmp_path: Path, name, body, line):
    # the first such row once made pandas take the ids for an index and move every row's
    # values one column left, with nothing said
    separator = "comma" if name.endswith(".csv") else "tab"
    with pytest.raises(UserError, match=rf"{name}: line {line} has 4 fields where the header names 3; .*{separator}"):
        read_labelled_table(_csv(tmp_path, body, name), COLS)
    no_ids = ColumnMap(text="text", label="label", id=None)
    with pytest.raises(UserError, match=rf"line {line} has 4 fields"):
        read_labelled_table(_csv(tmp_path, body, name), no_ids)


def test_a_json_string_holding_half_a_character_is_refused_naming_the_line_and_field(tmp_path: Path):
    body = b'{"id": 1, "text": "fine \\ud83d\\ude00", "label": "x"}\n\n{"id": 2, "text": "a\\ud800b", "label": "y"}\n'
    with pytest.raises(UserError, match=r"d.jsonl: line 3: field 'text' holds a lone surrogate escape \(\\ud800"):
        read_labelled_table(_csv(tmp_path, body, "d.jsonl"), COLS)
    array = b'[{"id": 1, "text": "a", "label": "\\udc00"}]'
    with pytest.raises(UserError, match=r"d.json: item 1: field 'label' holds a lone surrogate"):
        read_labelled_table(_csv(tmp_path, array, "d.json"), COLS)
