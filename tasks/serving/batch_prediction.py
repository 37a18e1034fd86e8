"""Batch prediction with a registered model: ``thaw predict MODEL@ALIAS``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from thaw.config import ThawConfig
from thaw.datasets import ID, ColumnMap, write_table
from thaw.ingest import read_labelled_table
from thaw.progress import Progress

CHUNK_ROWS = 512


def predict_file(cfg: ThawConfig, ref: str, source: Path, target: Path, text_column: str, id_column: str | None) -> int:
    """Write id, label, confidence for every row of ``source`` to ``target`` (CSV); returns rows.

    The output appears only when complete.
    """
    columns = ColumnMap(text=text_column, label=None, id=id_column)
    frame = read_labelled_table(source, columns)
    from tasks.release.stored_model import load_verified_model
    from tasks.tracking.client import resolve_version

    mv = resolve_version(cfg, ref)  # a clear error when it does not exist
    model = load_verified_model(cfg, mv.name, str(mv.version))
    parts = []
    progress = Progress(len(frame), "predicted")
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        parts.append(model.predict(chunk["text"].tolist()).set_index(chunk.index))
        progress(len(chunk))
    out = pd.concat([frame[[ID]].rename(columns={ID: columns.id_name}), pd.concat(parts)], axis=1)
    out["model_version"] = str(mv.version)
    write_table(out, target)
    return len(out)
