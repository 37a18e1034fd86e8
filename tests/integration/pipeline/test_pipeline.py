"""The real pipeline flow on a small fixture: Prefect harness, MLflow store, DVC repo,
Presidio, Great Expectations and a tiny random encoder, all in tmp_path."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.projects import pipeline_config
from thaw.datasets import file_md5
from thaw.demo_data import generate_support_tickets
from thaw.errors import ExpectationsFailed

pytestmark = pytest.mark.integration


@pytest.fixture
def fixture_data(workspace: Path):
    text, injected = generate_support_tickets(rows=500, seed=7)
    path = workspace / "data" / "tickets.csv"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path, injected


def _files_under(*roots: Path):
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                yield path


def test_pipeline_registers_a_traceable_challenger_without_pii(
    workspace, tiny_encoder, fixture_data, prefect_harness, capfd, caplog
):
    import pandas as pd

    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    train, injected = fixture_data
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)  # labels as a careless export may write them:
    marked = [f"**{v}** | [x](#top) <b>" if v.strip() else v for v in frame["intent"]]  # markup, a table's bar
    frame.assign(intent=marked).to_csv(train, index=False)
    cfg = pipeline_config(workspace, tiny_encoder, train)
    summary = json.loads(Path(thaw_pipeline(cfg)).read_text())

    client = client_for(cfg)
    mv = client.get_model_version_by_alias("tickets", "challenger")
    assert str(mv.version) == summary["model"]["version"] == "1"
    run = client.get_run(mv.run_id)
    digests = {d.dataset.name.split("@")[0]: d.dataset.digest for d in run.inputs.dataset_inputs}
    for split in ("train", "validation", "test"):
        curated_file = workspace / mv.tags[f"thaw.curated.{split}.path"]
        assert re.fullmatch(r"datasets/tickets/[0-9a-f]{16}/" + split + r"\.csv", mv.tags[f"thaw.curated.{split}.path"])
        recorded = yaml.safe_load(curated_file.with_name(curated_file.name + ".dvc").read_text())["outs"][0]["md5"]
        assert digests[f"tickets-curated-{split}"] == recorded == file_md5(curated_file)
        assert mv.tags[f"thaw.curated.{split}.md5"] == recorded
    assert mv.tags["thaw.raw.md5"] == yaml.safe_load((workspace / "data.dvc").read_text())["outs"][0]["md5"]
    registered = summary["registered_model"]  # measured in the run as it will serve, carried to the version
    served, onnx = registered["served"], registered["onnx"]
    assert registered["serving"]["p95_ms"] > 0 and float(mv.tags["thaw.serving.p95_ms"]) == served["p95_ms"]
    assert onnx["variant"] in ("int8", "fp32") and mv.tags["thaw.serving.engine"] == served["engine"]
    assert onnx["agreement_fp32"] >= 0.995 and onnx["reason"]
    assert all(r["serving"]["p95_ms"] > 0 for r in summary["rungs"] if r["rung"] != "scratch")
    assert run.data.tags["thaw.prefect_flow_run_id"] == mv.tags["thaw.prefect_flow_run_id"] != "local"
    # the logged model lists the dataset its test metrics were measured on ("Datasets used")
    tied = {m.key: m.dataset_digest for m in client.get_logged_model(mv.source.removeprefix("models:/")).metrics}
    assert tied["test_accuracy"] == tied["test_macro_f1"] == mv.tags["thaw.curated.test.md5"]
    # the data's labels in what the MLflow UI renders (the card) and the transfer note: text, not markup
    from markdown_it import MarkdownIt

    note = Path(client.download_artifacts(mv.run_id, "transfer_note.md", str(workspace))).read_text(encoding="utf-8")
    for markdown in (mv.description, note):
        rendered = MarkdownIt("commonmark", {"html": True}).render(markdown)
        assert 'href="#top"' not in rendered and "<b>" not in rendered and "<strong>refund" not in rendered
    assert "weakest labels on test (F1): \\*\\*" in mv.description and "| \\*\\*" in note

    # No injected PII value anywhere in the curated data, the state dir or the artifact store.
    values = [v for vals in injected.values.values() for v in vals]
    assert len(values) > 50
    curated_cache = [
        workspace / ".dvc" / "cache" / "files" / "md5" / m[:2] / m[2:]
        for m in (mv.tags[f"thaw.curated.{s}.md5"] for s in ("train", "validation", "test"))
    ]
    assert all(p.is_file() for p in curated_cache)
    leaks = []
    for path in [*_files_under(workspace / "datasets", cfg.state_path), *curated_cache]:
        blob = path.read_bytes()
        leaks += [(str(path), v) for v in values if v.encode() in blob]
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    leaks += [("logs", v) for v in values if v in logs]
    assert leaks == []
    assert summary["curation"]["pii"]["rows_changed"] > 0
    raw = pd.read_csv(train, dtype=str, keep_default_na=False)
    invalid = int(((raw["message"].str.strip() == "") | (raw["intent"].str.strip() == "")).sum())
    validity = next(s for s in summary["curation"]["stages"] if s["stage"] == "train:validity")
    assert invalid > 0 and sum(validity["removed"].values()) == invalid
    for stage in summary["curation"]["stages"]:  # every row is accounted for
        assert stage["rows_in"] - stage["rows_out"] == sum(stage["removed"].values())


def test_failing_expectation_halts_before_training(workspace, tiny_encoder, fixture_data, prefect_harness):
    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    train, _ = fixture_data
    cfg = pipeline_config(workspace, tiny_encoder, train, min_examples_per_class=10_000)
    with pytest.raises(ExpectationsFailed, match=r"expect_column_min_to_be_between\(examples\)"):
        thaw_pipeline(cfg)
    client = client_for(cfg)
    assert client.search_registered_models() == []
    runs = client.search_runs([client.get_experiment_by_name("thaw").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    reason = runs[0].data.tags["thaw.end_reason"]  # what the run view shows an operator
    assert reason.startswith("ExpectationsFailed: ") and "expect_column_min_to_be_between" in reason
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"curation_report.json", "expectations.json", "data_docs"} <= artifacts
    assert not (workspace / "datasets").exists()  # nothing published that looks complete


def test_a_finished_run_prunes_older_work_to_the_budget_and_keeps_all_it_used(
    workspace, tiny_encoder, fixture_data, prefect_harness, monkeypatch
):
    import os
    import time

    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for
    from thaw.state_budget import state_entries

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-that-stays-the-same")
    train, _ = fixture_data
    cfg = pipeline_config(workspace, tiny_encoder, train)
    thaw_pipeline(cfg)
    first = {(e.kind, e.name) for e in state_entries(cfg.state_path)}
    assert {"curation", "features"} <= {kind for kind, _ in first}  # kept: 10 GB is plenty
    # the first run as if it ran an hour ago: a run protects what was used from a second
    # before it started (file times are coarse), and here the next one starts at once
    hour_ago = time.time() - 3600
    for top in ("cache", "checkpoints", "runs"):
        for path in (cfg.state_path / top).rglob("*"):
            os.utime(path, (hour_ago, hour_ago), follow_symlinks=False)
    # new rows make a new dataset version; with a budget of nothing, only this run's work stays
    train.write_text(
        train.read_text(encoding="utf-8") + "T999999,where is my parcel please,delivery_status\n", encoding="utf-8"
    )
    started = time.time()
    thaw_pipeline(cfg.model_copy(update={"state_budget_gb": 1e-9}))
    kept = state_entries(cfg.state_path)
    assert kept and all(e.used >= started - 1 for e in kept)  # each one used by the second run
    assert first - {(e.kind, e.name) for e in kept}  # the first run's curation at least is gone
    assert not list(cfg.state_path.rglob(".*.evicted-*"))
    assert {e.kind for e in kept} >= {"curation", "runs"}
    (run_dir,) = (cfg.state_path / "runs").iterdir()  # the first run's directory went, its MLflow run stays
    assert {e.name for e in kept if e.kind == "runs"} == {run_dir.name}
    client = client_for(cfg)
    versions = client.search_model_versions("name='tickets'")
    assert len(versions) == 2 and all(client.list_artifacts(v.run_id) for v in versions)  # MLflow keeps both


def test_curation_is_cached_by_content_and_invalidated_by_a_change(workspace, tiny_encoder, fixture_data, monkeypatch):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-that-stays-the-same")
    train, _ = fixture_data
    cfg = pipeline_config(workspace, tiny_encoder, train)
    first = curate_dataset.fn(cfg, workspace / "run1")
    second = curate_dataset.fn(cfg, workspace / "run2")
    assert not first.cache_hit and second.cache_hit
    assert {s: file_md5(p) for s, p in first.files.items()} == {s: file_md5(p) for s, p in second.files.items()}
    train.write_text(
        train.read_text(encoding="utf-8") + "T999999,where is my parcel please,delivery_status\n", encoding="utf-8"
    )
    third = curate_dataset.fn(cfg, workspace / "run3")
    assert not third.cache_hit


def test_curation_on_a_dask_cluster_is_byte_identical_to_the_single_process_run(
    workspace, tiny_encoder, fixture_data, monkeypatch, prefect_harness
):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "the-same-secret-for-both-runs")
    train, _ = fixture_data
    local = pipeline_config(workspace, tiny_encoder, train)
    local = local.model_copy(
        update={
            "curation": local.curation.model_copy(
                update={"pii": local.curation.pii.model_copy(update={"chunk_rows": 100})}
            )
        }
    )
    dask = local.model_copy(
        update={
            "curation": local.curation.model_copy(update={"executor": "dask", "dask_workers": 2}),
            "state_dir": Path(".thaw-dask"),
        }
    )
    one = curate_dataset.fn(local, workspace / "local")
    system_tmp = workspace / "system-tmp"  # the temporary directory, for this process and the workers
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    two = curate_dataset.fn(dask, workspace / "dask")
    assert list(system_tmp.iterdir()) == []  # the cluster kept its scratch space (spilled text) in the work dir
    assert not two.cache_hit
    assert {s: file_md5(p) for s, p in one.files.items()} == {s: file_md5(p) for s, p in two.files.items()}
    processes = [json.loads(c.report_path.read_text(encoding="utf-8"))["pii"]["processes"] for c in (one, two)]
    assert processes == [1, 2]  # 500 rows stay in this process; the cluster has two workers
    from prefect import get_client

    with get_client(sync_client=True) as client:  # detection and signatures ran on the cluster
        names = {client.read_flow(r.flow_id).name for r in client.read_flow_runs()}
    assert {"detect-pii-on-dask", "minhash-on-dask"} <= names
    assert not (workspace / "dask" / "dask").exists()  # chunk files of raw text are gone
