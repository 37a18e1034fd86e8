"""Ingest: read a labelled table (CSV, JSONL, Parquet) into canonical columns.

Canonical columns are ``id``, ``text``, ``label``; the user's names are kept in a
``ColumnMap`` so outputs can use them again. Every refusal names the file and the
column or row; rows with empty text or label are not refused but counted by the caller.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from thaw.datasets import ID, LABEL, TEXT, ColumnMap
from thaw.errors import UserError

SUPPORTED_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def _format_of(path: Path) -> str:
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UserError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use one of {supported}")
    return fmt


def _check_file(path: Path, role: str) -> str:
    """The file's format; refuses a missing file, an unsupported type and an empty file."""
    if not path.is_file():
        raise UserError(f"{path}: {role} file not found")
    fmt = _format_of(path)
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    return fmt


def _check_utf8(path: Path) -> None:
    """Refuse undecodable bytes, naming the line they are on."""
    line = 1
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "re-save the file as UTF-8"
                ) from None
            line += 1


def _read_frame(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt in ("csv", "tsv"):
            _check_utf8(path)
            return pd.read_csv(
                path,
                sep="," if fmt == "csv" else "\t",
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
                on_bad_lines="error",
                engine="python",
                quoting=csv.QUOTE_MINIMAL,
            )
        if fmt == "jsonl":
            _check_utf8(path)
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise UserError(f"{path}: malformed {fmt.upper()}: {str(exc).strip().splitlines()[-1]}") from None
    except ValueError as exc:  # pandas' JSON reader and pyarrow raise ValueError subclasses
        raise UserError(f"{path}: cannot parse as {fmt.upper()}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _as_text(series: pd.Series) -> pd.Series:
    """Strings as they are; nulls become '' (counted as empty later, never guessed)."""
    return series.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))


def read_labelled_table(path: Path, columns: ColumnMap) -> pd.DataFrame:
    """Return the table at ``path`` as columns ``id``, ``text``, ``label`` (all str).

    Refuses a missing or empty file, an unsupported type, undecodable bytes, malformed
    rows and missing columns. Without an id column, ids are ``<file stem>:<row number>``.
    """
    path = Path(path)
    fmt = _check_file(path, "input")
    frame = _read_frame(path, fmt)
    if frame.empty:
        raise UserError(f"{path}: no data rows")
    wanted = [c for c in (columns.text, columns.label, columns.id) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise UserError(f"{path}: column {missing[0]!r} not found (columns are: {have})")
    out = pd.DataFrame({TEXT: _as_text(frame[columns.text])})
    out[LABEL] = _as_text(frame[columns.label]) if columns.label else ""
    if columns.id:
        out.insert(0, ID, _as_text(frame[columns.id]))
        dup = out[ID][out[ID].duplicated()]
        if not dup.empty:
            raise UserError(f"{path}: id column {columns.id!r} repeats the value {dup.iloc[0]!r}; ids must be unique")
    else:
        out.insert(0, ID, [f"{path.stem}:{i + 1}" for i in range(len(out))])
    return out


def _header(path: Path, fmt: str) -> list[str]:
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
        return next(csv.reader([first], delimiter="," if fmt == "csv" else "\t"), [])
    if fmt == "jsonl":
        import json

        with open(path, encoding="utf-8", errors="replace") as fh:
            try:
                return list(json.loads(fh.readline() or "{}"))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line 1 is not a JSON object") from None
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:
        raise UserError(f"{path}: not a readable Parquet file") from None


def preflight_inputs(files: dict[str, Path | None], columns: ColumnMap) -> None:
    """Cheap checks before a run starts: each given file exists, has a supported type,
    is not empty and has the configured columns. Deeper problems surface while reading."""
    for role, path in files.items():
        if path is None:
            continue
        path = Path(path)
        fmt = _check_file(path, role)
        if fmt != "parquet":
            _check_utf8(path)
        header = _header(path, fmt)
        for col in (columns.text, columns.label, columns.id):
            if col and col not in header:
                raise UserError(f"{path}: column {col!r} not found (columns are: {', '.join(header)})")
