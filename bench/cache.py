"""The frozen rung on unchanged data: first run vs re-run (features come from the cache)."""

from __future__ import annotations

import io
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import row


def run(rows: int = 3200) -> dict:
    import pandas as pd

    from tasks.ladder.features import extract_frozen_features
    from tasks.ladder.frozen_rung import train_frozen_rung
    from thaw.config import ThawConfig
    from thaw.datasets import ID, LABEL, TEXT, DatasetVersion, TrackedFile, file_md5
    from thaw.demo_data import generate_support_tickets
    from thaw.rungs import EvaluationPlan, LadderContext

    ws = Path(tempfile.mkdtemp(prefix="thaw-cache-"))
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    frame = pd.read_csv(io.StringIO(generate_support_tickets(rows)[0]), dtype=str, keep_default_na=False)
    frame = frame[(frame["message"] != "") & (frame["intent"] != "")].drop_duplicates("message")
    # as curation writes its splits: thaw's canonical columns
    frame = frame.rename(columns={"ticket_id": ID, "message": TEXT, "intent": LABEL})[[ID, TEXT, LABEL]]
    files = {}
    for split, part in (
        ("train", frame.iloc[: rows * 11 // 16]),  # 2,200 and 400 of 3,200 generated
        ("validation", frame.iloc[rows * 11 // 16 : rows * 13 // 16]),
        ("test", frame.iloc[rows * 13 // 16 :]),
    ):
        path = ws / f"{split}.csv"
        part.to_csv(path, index=False)
        files[split] = TrackedFile(path.name, file_md5(path), path.stat().st_size)
    curated = DatasetVersion(".", "bench", files, "none")
    cfg = ThawConfig.model_validate({"workspace": str(ws)})
    labels = tuple(sorted(frame[LABEL].unique()))
    times = []
    for attempt in range(2):
        start = time.perf_counter()
        features = extract_frozen_features.fn(curated, cfg)
        train_frozen_rung.fn(
            features, LadderContext(curated, labels, cfg, ws / f"run{attempt}", EvaluationPlan.holdout())
        )
        times.append(time.perf_counter() - start)
    print(f"Frozen rung on unchanged data ({len(frame):,} demo rows)")
    row("first run / re-run (cached features)", f"{times[0]:.1f} s / {times[1]:.2f} s")
    row("speed-up", f"{times[0] / times[1]:.0f}x", "goal >= 20x")
    return {"first_s": times[0], "rerun_s": times[1], "speedup": times[0] / times[1]}
