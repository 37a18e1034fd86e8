"""Ingest: read a labelled table (CSV, JSONL, Parquet) into canonical columns.

Canonical columns are ``id``, ``text``, ``label``; the user's names are kept in a
``ColumnMap`` so outputs can use them again. Every refusal names the file and the
column or row; rows with empty text or label are not refused but counted by the caller.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from thaw.datasets import ID, LABEL, SLICE, TEXT, ColumnMap, lone_surrogate, one_spelling
from thaw.errors import UserError
from thaw.parse import json_problem, json_value

SUPPORTED_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def _format_of(path: Path) -> str:
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UserError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use one of {supported}")
    return fmt


def _check_file(path: Path, role: str) -> str:
    """The file's format; refuses a missing file, an unsupported type and an empty file."""
    if path.is_dir():
        raise UserError(f"{path}: a directory; give the {role} file")
    if not path.is_file():
        raise UserError(f"{path}: {role} file not found")
    fmt = _format_of(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    return fmt


def _missing_column(path: Path, column: str, header: Sequence[object]) -> UserError:
    """A column not in the file: the columns it has (quoted where a name's spaces would
    not show), and the likely cause: a header that is one name holding the column between
    semicolons, tabs or bars (a spreadsheet that saves "CSV" with semicolons), or a
    column of that name in other case."""
    names = [str(h) for h in header]
    have = ", ".join(repr(n) if n != " ".join(n.split()) or not n.isprintable() else n for n in names)
    cut = f"{have[:300]}..." if len(have) > 300 else have
    hint = ""
    for separator, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if len(names) == 1 and column in names[0].split(separator):
            hint = f"; its columns look separated by {called}: thaw reads .csv separated by commas, .tsv by tabs"
    other_case = [n for n in names if one_spelling(n).casefold() == one_spelling(column).casefold()]
    if len(other_case) == 1 and not hint:
        hint = f"; did you mean {other_case[0]!r}? (column names are matched with their case)"
    return UserError(f"{path}: column {column!r} not found (columns are: {cut}){hint}")


def _header_match(column: str, header: Sequence[object]) -> object | None:
    """``column``'s name in ``header``: the same name, else the one header name that reads
    the same once its whitespace and composition take one spelling (``one_spelling``: an
    export's 'text ' or 'text\u00a0' is the text column); None when there is none, or two."""
    if column in header:
        return column
    same = [name for name in header if one_spelling(str(name)) == one_spelling(column)]
    return same[0] if len(same) == 1 else None


def header_names(path: Path, wanted: Sequence[str | None], header: Sequence[object]) -> dict[str, object]:
    """Each wanted column (None: not asked for) -> its name in ``header`` (``_header_match``);
    UserError (``_missing_column``) for the first that is not there."""
    out: dict[str, object] = {}
    for column in filter(None, wanted):
        if (found := _header_match(column, header)) is None:
            raise _missing_column(path, column, header)
        out[column] = found
    return out


def _cannot_read(path: Path, exc: OSError) -> UserError:
    return UserError(f"{path}: cannot read ({exc.strerror or exc})")


def _check_utf8_and_find_stray_cr(path: Path) -> bool:
    """Refuse undecodable bytes, naming the line they are on. Returns whether a carriage
    return stands inside a line of a file whose lines end in LF or CRLF (read in the same
    pass for ``_refuse_carriage_returns_in_unquoted_fields``): a file whose lines all end
    in CR (old Mac Excel) has fewer than two LF-ended lines."""
    line, lf_lines, stray_cr = 1, 0, False
    try:
        with open(path, "rb") as fh:
            for raw in fh:  # binary lines end at LF only
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise UserError(
                        f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                        f"{exc.start + 1}); re-save the file as UTF-8"
                    ) from None
                lf_lines += raw.endswith(b"\n")
                stray_cr = stray_cr or b"\r" in raw.rstrip(b"\n").removesuffix(b"\r")
                line += 1
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    return stray_cr and lf_lines >= 2


def _delimiter(fmt: str) -> str:
    return "," if fmt == "csv" else "\t"


JSON_KINDS = {
    list: "an array",
    int: "a number",
    float: "a number",
    str: "a string",
    bool: "a boolean",
    type(None): "null",
}


def _json_records(path: Path, first_only: bool = False) -> list[dict]:
    """Objects from JSON Lines (one object per line) or, for ``.json``, one array of objects.
    Refuses anything else, and a string holding a lone surrogate escape (``"\\ud800"``:
    valid JSON, no character, and no UTF-8 to write it as), naming the line or item."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json_value(text)
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({json_problem(exc)})") from None
        places = [f"item {number}" for number in range(1, len(records) + 1)]
    else:
        records, places = [], []
        # lines end at LF (CRLF too: JSON reads the CR as whitespace), never where
        # str.splitlines ends them: a value may hold U+2028, U+0085 or a form feed unescaped
        for number, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    records.append(json_value(line))
                except ValueError as exc:
                    problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                    raise UserError(f"{path}: line {number} is not valid JSON ({problem})") from None
                places.append(f"line {number}")
                if first_only:
                    break
    for place, record in zip(places, records, strict=True):
        if not isinstance(record, dict):
            kind = JSON_KINDS.get(type(record), "not an object")
            hint = "; a JSON array of rows belongs in a .json file" if isinstance(record, list) else ""
            raise UserError(f"{path}: {place} is {kind}, not a JSON object with named fields{hint}")
        for name, value in record.items():
            for part, said in ((name, "the name of field"), (value, "field")):
                if isinstance(part, str) and (escape := lone_surrogate(part)):
                    raise UserError(
                        f"{path}: {place}: {said} {name!r} holds a lone surrogate escape "
                        f"({escape}, half of a character); write the whole character"
                    )
    return records


MAX_FIELD_CHARS = 16 * 1024 * 1024  # one CSV field; curation's length stage cuts long texts after


def _read_frame(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt in ("csv", "tsv"):
            stray_cr = _check_utf8_and_find_stray_cr(path)
            _refuse_repeated_columns(path, _header(path, fmt))
            csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))  # the module's default is 131072
            if stray_cr:
                _refuse_carriage_returns_in_unquoted_fields(path, fmt)
            _refuse_a_first_row_longer_than_the_header(path, fmt)
            frame = pd.read_csv(
                path,
                sep=_delimiter(fmt),
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",  # a byte-order mark (Excel's "CSV UTF-8") is not part of the first name
                on_bad_lines="error",
                engine="python",
                quoting=csv.QUOTE_MINIMAL,
                # a blank line is a row, as a spreadsheet shows it: skipped, it would move every
                # later row's number (ids, errors, predictions), and pandas skips a one-column
                # file's empty value ("") with it
                skip_blank_lines=False,
            )
            return _without_trailing_blank_lines(frame)
        if fmt == "jsonl":
            _check_utf8_and_find_stray_cr(path)
            records = _json_records(path)
            names = list(dict.fromkeys(k for r in records for k in r))
            # object columns: values keep the type JSON gave them (1 stays an int next to 1.0)
            return pd.DataFrame({n: pd.Series([r.get(n) for r in records], dtype=object) for n in names})
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        message = str(exc).strip().splitlines()[-1]
        if "field larger than field limit" in message:
            message = f"a field is longer than {MAX_FIELD_CHARS:,} characters"
        if counts := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message):
            expected, record, saw = (int(n) for n in counts.groups())
            raise _too_many_fields(path, fmt, _line_of_record(path, fmt, record), saw, expected) from None
        raise UserError(f"{path}: malformed {fmt.upper()}: {message}") from None
    except ValueError as exc:  # pyarrow raises ValueError subclasses
        raise UserError(f"{path}: cannot parse as {fmt.upper()}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise _cannot_read(path, exc) from None


def _refuse_carriage_returns_in_unquoted_fields(path: Path, fmt: str) -> None:
    """Refuse, naming the line, a carriage return inside an unquoted field of a file whose
    lines end in LF or CRLF. Read as RFC 4180 reads it, it would end the row there and its
    tail would become a row of its own, with the columns shifted and nothing said (text
    pasted from a form or an old Mac application carries one). A quoted field may hold
    one, and a file whose lines all end in CR (old Mac Excel) is read as such. Called only
    when ``_check_utf8_and_find_stray_cr`` saw a CR inside a line of such a file."""
    # the csv module, given lines that end at LF only, calls a CR outside quotes an error
    # and counts the line; inside quotes it is text
    with open(path, encoding="utf-8-sig", newline="\n") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(fmt))
        try:
            for _ in reader:
                pass
        except csv.Error as exc:
            if "new-line character" not in str(exc):
                return  # another fault: pandas names it
            raise UserError(
                f"{path}: line {reader.line_num} has a carriage return inside an unquoted field, which would "
                "end the row there; put the field in double quotes or remove the character"
            ) from None


def _too_many_fields(path: Path, fmt: str, line: int, fields: int, named: int) -> UserError:
    separator = "comma" if fmt == "csv" else "tab"
    return UserError(
        f"{path}: line {line} has {fields} fields where the header names {named}; "
        f"a value holding a {separator} needs double quotes around it"
    )


def _line_of_record(path: Path, fmt: str, record: int) -> int:
    """The file line on which record ``record`` (the header is 1) starts: pandas counts
    records, and a quoted value holding line breaks makes them differ from lines."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(fmt))
        start = 1
        for _ in range(record - 1):
            if next(reader, None) is None:
                break
            start = reader.line_num + 1
    return start


def _refuse_a_first_row_longer_than_the_header(path: Path, fmt: str) -> None:
    """Refuse a first data row with more fields than the header. pandas reads one as
    naming an index column and moves every row's values one column to the left, with
    nothing said (a text with an unquoted comma in the first row did this to a whole file:
    ids became the text's first words, labels the rest); a later such row is refused by
    pandas, and ``_read_frame`` words both alike."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(fmt))
        try:
            header = next(reader, [])
            line = reader.line_num + 1
            first = next(reader, None)
        except csv.Error:
            return  # pandas names the fault
    if first is not None and len(first) > len(header):
        raise _too_many_fields(path, fmt, line, len(first), len(header))


def _without_trailing_blank_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the rows read from blank lines at the end of the file (every value
    missing): an editor's extra newline is no row to anyone. Blank lines before a row of
    data stay rows (empty, accounted for where empty text is)."""
    blank = frame.isna().all(axis=1).to_numpy()
    keep = len(blank)
    while keep and blank[keep - 1]:
        keep -= 1
    return frame.iloc[:keep]


def _refuse_repeated_columns(path: Path, header: list[str]) -> None:
    """A name given to two columns: pandas would rename the second (``text.1``) and the
    column meant may not be the one read."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen:
            raise UserError(f"{path}: columns {seen[name]} and {position} are both named {name!r}; rename one")
        seen[name] = position


def _as_text(series: pd.Series, path: Path | None = None, column: str = "") -> tuple[pd.Series, int]:
    """Values as strings, and how many were normalised. Strings stay as they are; nulls
    become '' (counted as empty later, never guessed); typed JSON/Parquet values take one
    spelling: a whole number written 1.0 becomes "1", a boolean "true"/"false". Refuses
    (UserError naming the row) bytes, objects and lists, whose text would be a Python repr."""
    changed = 0
    for row, value in enumerate(series, start=1):
        if isinstance(value, bytes | bytearray | dict | list | tuple | np.ndarray):
            kind = "bytes" if isinstance(value, bytes | bytearray) else "an object or a list"
            raise UserError(f"{path}: row {row}: column {column!r} holds {kind}, not text; store it as a string")

    def text(value) -> str:
        nonlocal changed
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        if isinstance(value, bool):
            changed += 1
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            changed += 1
            return str(int(value))
        return str(value)

    return series.map(text), changed


def _typed_labels_agree(path: Path, values: pd.Series, column: str) -> None:
    """Refuse a label column that mixes booleans and numbers (true and 1 would be two
    labels, and no spelling of one is right for the other)."""
    bools = [i for i, v in enumerate(values) if isinstance(v, bool)]
    numbers = [i for i, v in enumerate(values) if isinstance(v, int | float) and not isinstance(v, bool)]
    if bools and numbers:
        raise UserError(
            f"{path}: label column {column!r} mixes booleans (row {bools[0] + 1}: {values.iat[bools[0]]!r}) and "
            f"numbers (row {numbers[0] + 1}: {values.iat[numbers[0]]!r}); give every label one type"
        )


def read_labelled_table(path: Path, columns: ColumnMap) -> pd.DataFrame:
    """Return the table at ``path`` as columns ``id``, ``text``, ``label`` (all str).

    Refuses a missing, unreadable or empty file, an unsupported type, undecodable bytes,
    malformed rows, missing columns and repeated ids. Without an id column, ids are
    ``<file stem>:<row number>``. Typed labels take one spelling (see ``_as_text``), and so
    do labels typed with other whitespace or composition (``one_spelling``); the count of
    labels respelled is in ``frame.attrs["normalised_labels"]``.
    """
    path = Path(path)
    fmt = _check_file(path, "input")
    frame = _read_frame(path, fmt)
    if frame.empty:
        raise UserError(f"{path}: no data rows")
    named = header_names(path, (columns.text, columns.label, columns.id, columns.slice), list(frame.columns))
    frame = frame.rename(columns={found: column for column, found in named.items()})
    out = pd.DataFrame({TEXT: _as_text(frame[columns.text], path, columns.text)[0]})
    normalised = 0
    if columns.label:
        _typed_labels_agree(path, frame[columns.label], columns.label)
        labels, normalised = _as_text(frame[columns.label], path, columns.label)
        out[LABEL] = labels.map(one_spelling)
        normalised += int((out[LABEL] != labels).sum())
    else:
        out[LABEL] = ""
    if columns.id:
        out.insert(0, ID, _as_text(frame[columns.id], path, columns.id)[0])
        _refuse_repeated_ids(path, out[ID], columns.id)
    else:
        out.insert(0, ID, [f"{path.stem}:{i + 1}" for i in range(len(out))])
    if columns.slice:
        out[SLICE] = _as_text(frame[columns.slice], path, columns.slice)[0]
    out.attrs["normalised_labels"] = normalised
    return out


def _refuse_repeated_ids(path: Path, ids: pd.Series, column: str) -> None:
    """Ids must be unique; the error names the rows, never the value (an id may be an
    e-mail address, and errors become run tags and Prefect state messages)."""
    repeated = ids[ids.duplicated(keep=False)]
    if repeated.empty:
        return
    first = repeated.iloc[0]
    rows = [i + 1 for i in repeated.index[repeated == first][:2]]
    raise UserError(
        f"{path}: id column {column!r} has the same value in rows {rows[0]} and {rows[1]}; ids must be unique"
    )


def _header(path: Path, fmt: str) -> list[str]:
    if fmt in ("csv", "tsv"):
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                first = fh.readline()
        except OSError as exc:
            raise _cannot_read(path, exc) from None
        return next(csv.reader([first], delimiter=_delimiter(fmt)), [])
    if fmt == "jsonl":
        records = _json_records(path, first_only=True)
        return list(records[0]) if records else []
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:
        raise UserError(f"{path}: not a readable Parquet file") from None


def input_columns(path: Path, role: str = "input") -> list[str]:
    """The column names of a user's file (any supported type), read from its header only."""
    path = Path(path)
    return _header(path, _check_file(path, role))


def has_column(path: Path, column: str, role: str = "input") -> bool:
    """Whether the file at ``path`` has ``column``, matched as ``header_names`` matches it
    (its header only is read)."""
    path = Path(path)
    return _header_match(column, _header(path, _check_file(path, role))) is not None


def preflight_inputs(files: dict[str, Path | None], columns: ColumnMap) -> None:
    """Cheap checks before a run starts: each given file exists, has a supported type,
    is not empty and has the configured columns. Deeper problems surface while reading."""
    for role, path in files.items():
        if path is None:
            continue
        path = Path(path)
        fmt = _check_file(path, role)
        if fmt != "parquet":
            _check_utf8_and_find_stray_cr(path)
        header_names(path, (columns.text, columns.label, columns.id, columns.slice), _header(path, fmt))


def read_columns(path: Path, names: Sequence[str], role: str = "input") -> dict[str, list[str]]:
    """``names`` columns of a user's file (any supported type) as text, row by row;
    UserError naming the file and the first missing column."""
    path = Path(path)
    frame = _read_frame(path, _check_file(path, role))
    named = header_names(path, names, list(frame.columns))
    frame = frame.rename(columns={found: column for column, found in named.items()})
    return {n: _as_text(frame[n], path, n)[0].tolist() for n in names}
