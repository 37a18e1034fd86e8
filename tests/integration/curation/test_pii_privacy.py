"""The key never leaves and unscrubbed text does not linger: after a whole pipeline run
with PII detection on a Dask cluster, neither the pseudonymisation key nor any injected
PII value is in Prefect's database, MLflow's database or any file under the state dir;
chunk files of raw text are gone, on success and on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projects import pipeline_config
from thaw.demo_data import generate_support_tickets

pytestmark = pytest.mark.integration

KEY = "k3y-that-only-lives-in-the-environment-7f3a9c"


def _dask(cfg):
    curation = cfg.curation.model_copy(
        update={
            "executor": "dask",
            "dask_workers": 2,
            "pii": cfg.curation.pii.model_copy(update={"chunk_rows": 100}),
        }
    )
    return cfg.model_copy(update={"curation": curation})


def _prefect_database() -> list[Path]:
    import prefect.settings

    url = prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    db = Path(url.split(":///", 1)[1])
    return [p for p in db.parent.glob(db.name + "*") if p.is_file()]  # the database and its -wal/-shm


def test_a_dask_run_leaves_no_key_and_no_pii_in_prefect_mlflow_or_the_state_dir(
    workspace, tiny_encoder, prefect_harness, monkeypatch
):
    from flows.pipeline import thaw_pipeline

    monkeypatch.setenv("THAW_PII_SECRET", KEY)
    text, injected = generate_support_tickets(rows=500, seed=11)
    train = workspace / "data" / "tickets.csv"
    train.parent.mkdir(parents=True)
    train.write_text(text, encoding="utf-8")
    cfg = _dask(pipeline_config(workspace, tiny_encoder, train))
    thaw_pipeline(cfg)

    values = sorted({v for vals in injected.values.values() for v in vals})
    assert len(values) > 50 and all(v in text for v in values[:5])
    files = [*_prefect_database(), *(p for p in cfg.state_path.rglob("*") if p.is_file())]
    assert cfg.state_path / "mlflow.db" in files and len(files) > 20
    found = []
    for path in files:
        blob = path.read_bytes()
        found += [(path.name, "key") for _ in [KEY] if KEY.encode() in blob]
        found += [(path.name, v) for v in values if v.encode() in blob]
    assert found == []
    assert not list(cfg.state_path.rglob("chunk-*.json"))  # raw text chunks removed


def test_chunk_files_of_raw_text_are_removed_when_detection_fails(workspace, monkeypatch):
    from tasks.curation import scaleout as scaleout
    from thaw.config import CurationConfig
    from thaw.pii.detector import PiiSecret, ScrubStats

    def broken(*args, **kwargs):
        assert list((workspace / "chunks").glob("chunk-*.json"))  # they existed while it ran
        raise RuntimeError("the cluster went away")

    monkeypatch.setattr(scaleout.detect_chunks, "with_options", lambda **kw: broken)
    texts = ["call Ana Lima on +44 20 7946 0958"] * 250
    with pytest.raises(RuntimeError, match="went away"):
        scaleout.scrub_texts_on_dask(texts, CurationConfig(), PiiSecret(b"k", "t"), ScrubStats(), workspace / "chunks")
    assert not (workspace / "chunks").exists()
