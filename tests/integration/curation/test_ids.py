"""Ids are carried into the curated splits, the report and every message: an id that is
PII (an e-mail address used as a ticket id) is replaced by a keyed digest, the rest stay."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from thaw.config import ThawConfig

pytestmark = pytest.mark.integration
WORDS = (
    "parcel invoice password browser monday courier voucher screen tablet laptop receipt warranty "
    "locker token session cookie printer router charger cable"
).split()


@pytest.mark.parametrize("mode", ["scrub", "hash"])
def test_ids_holding_pii_never_reach_the_curated_splits(workspace, monkeypatch, mode):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
    rows = []
    for i in range(40):
        row_id = f"ana.lima{i}@example.com" if i % 2 else f"T-{i:04d}"
        words = " ".join(random.Random(i).sample(WORDS, 8))  # no two rows near-duplicates
        intent = "refund" if i % 4 < 2 else "login"
        rows.append({"ticket": row_id, "message": f"{intent} {words}", "intent": intent})
    train = workspace / "data" / "tickets.csv"
    train.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(train, index=False)
    cfg = ThawConfig.model_validate(
        {
            "workspace": str(workspace),
            "data": {"train": str(train), "text_column": "message", "label_column": "intent", "id_column": "ticket"},
            "curation": {"pii": {"ids": mode}, "expectations": {"min_rows": 10}},
        }
    )
    curated = curate_dataset.fn(cfg, workspace / "run")
    ids = [i for path in curated.files.values() for i in pd.read_csv(path, dtype=str)["id"]]
    leaks = [p.name for p in workspace.joinpath("run").rglob("*") if p.is_file() and b"example.com" in p.read_bytes()]
    assert leaks == [] and len(ids) == len(set(ids)) == 40
    kept = {i for i in ids if i.startswith("T-")}
    assert kept == (set() if mode == "hash" else {f"T-{i:04d}" for i in range(0, 40, 2)})
    replaced = json.loads(curated.report_path.read_text(encoding="utf-8"))["notes"]["ids_replaced"]
    assert replaced == {"train": 40 if mode == "hash" else 20}
