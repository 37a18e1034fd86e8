"""Batch prediction with a registered model: ``thaw predict MODEL@ALIAS``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from thaw.config import ThawConfig
from thaw.datasets import ID, ColumnMap, write_table
from thaw.errors import UserError
from thaw.ingest import read_labelled_table
from thaw.progress import Progress

CHUNK_ROWS = 512


@dataclass(frozen=True)
class Predicted:
    """What ``predict_file`` wrote: its rows, and the data rows (1-based) whose text is
    empty, each answered as the model answers an empty text."""

    rows: int
    empty_text_rows: tuple[int, ...]


def predict_file(
    cfg: ThawConfig, ref: str, source: Path, target: Path, text_column: str, id_column: str | None
) -> Predicted:
    """Write id, label, confidence for every row of ``source`` to ``target`` (CSV, or
    Parquet for a ``.parquet`` name), one output row per input row, empty texts included.
    The output appears only when complete.
    """
    fmt = output_format(source, target)  # before minutes of predicting, not after
    columns = ColumnMap(text=text_column, label=None, id=id_column)
    frame = read_labelled_table(source, columns)
    from tasks.release.ledger import resolve_backed_version
    from tasks.release.stored_model import load_verified_model

    mv = resolve_backed_version(cfg, ref, "thaw predict")
    model = load_verified_model(cfg, mv.name, str(mv.version))
    parts = []
    progress = Progress(len(frame), "predicted")
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        parts.append(model.predict(chunk["text"].tolist()).set_index(chunk.index))
        progress(len(chunk))
    out = pd.concat([frame[[ID]].rename(columns={ID: columns.id_name}), pd.concat(parts)], axis=1)
    out["model_version"] = str(mv.version)
    write_table(out, target, fmt)
    empty = tuple(i for i, text in enumerate(frame["text"], start=1) if not text.strip())
    return Predicted(len(out), empty)


OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet"}


def output_format(source: Path, target: Path) -> str:
    """The format of ``target`` by its name, refused in one line where the predictions
    could not be written there or would replace the rows they are of."""
    if target.is_dir():
        raise UserError(f"--output {target}: is a directory; give a file name (.csv or .parquet)")
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise UserError(
            f"--output {target}: is the input file, which the predictions would replace; write them to another file"
        )
    fmt = OUTPUT_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise UserError(f"--output {target}: a .csv or .parquet file name (the name says the format written)")
    return fmt
