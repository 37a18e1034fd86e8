"""The registry as an insider writes it, against a real MLflow tracking server on loopback:
someone who may edit a version's tags or register a version of their own. Nothing they
write becomes a path to delete, and none of their code runs when the approver approves,
predicts or serves; the servers thaw starts carry no PII key and no tracking password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.projects import approver_config, ticket_project
from tests.servers import free_port, mlflow_server, running
from thaw.config import ThawConfig
from thaw.errors import UserError

pytestmark = pytest.mark.e2e
MODEL = "insider-tickets"

# The registrant's code: it would leave a marker (and could read the approver's
# credentials) wherever it ran.
EVIL_ENTRY = """
import os, pathlib, mlflow
seen = os.environ.get("MLFLOW_TRACKING_PASSWORD", "ran")
pathlib.Path(os.environ.get("INSIDER_MARKER", "/nonexistent/marker")).write_text(seen)
from thaw.serving import ThawTextClassifier
mlflow.models.set_model(ThawTextClassifier())
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_encoder, prefect_harness):
    """A model registered by thaw (v1) on a real tracking server, approved as champion."""
    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    base = tmp_path_factory.mktemp("insider")
    with mlflow_server(base / "mlflow") as uri:
        cfg = ThawConfig.model_validate(
            ticket_project(base / "project", tiny_encoder, MODEL, 300, 5, tracking={"tracking_uri": uri})
        )
        thaw_pipeline(cfg)
        from tasks.release.promotion import approve

        approve(cfg, MODEL, "1", "thaw's own model, the champion an insider's version would challenge")
        yield cfg, client_for(cfg), base


def _thaw(args: list[str], tmp_path: Path, cfg: ThawConfig, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "thaw_cli", *args, "--workspace", str(cfg.root)]
    cmd += ["--config", str(approver_config(tmp_path, cfg))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def _predict(tmp_path: Path, cfg: ThawConfig, version: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "in.csv").write_text("text\nI lost my card\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    return _thaw(["predict", f"{MODEL}/{version}", "--input", str(tmp_path / "in.csv"), "--output", str(out)],
                 tmp_path, cfg, **env)  # fmt: skip


def _register_own(cfg: ThawConfig, client, tmp_path: Path, how: str, marker: Path, weights: Path | None = None) -> str:
    """Register a version the way an insider with EDIT rights could: their own code file,
    a pickled model or thaw's own entry, beside thaw's weights (or ``weights``), with a
    digest tag that matches its files."""
    import mlflow

    from tasks.release.stored_model import (
        MODEL_DIGEST_TAG,
        check_stored_files,
        installed_entry,
        model_files_digest,
        verified_model_dir,
    )
    from thaw.serving import MODEL_ARTIFACT

    weights = weights or check_stored_files(verified_model_dir(cfg, MODEL, "1"), MODEL, "1")
    from tasks.tracking.client import scoped_tracking_uri

    os.environ["INSIDER_MARKER"] = str(marker)
    # scoped: MLflow keeps the URI in globals and the environment, which later tests would inherit
    try:
        with scoped_tracking_uri(cfg.tracking.tracking_uri):
            with mlflow.start_run():
                if how == "thaw":
                    python_model = str(installed_entry())
                elif how == "code":
                    entry = tmp_path / "pyfunc_entry.py"  # the same name as thaw's, other bytes
                    entry.write_text(EVIL_ENTRY, encoding="utf-8")
                    python_model = str(entry)
                else:
                    from tests.insider_model import MarkerModel

                    python_model = MarkerModel()
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=python_model, artifacts={MODEL_ARTIFACT: str(weights)}
                )
            mv = mlflow.register_model(info.model_uri, MODEL)
            stored = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{mv.version}", dst_path=str(tmp_path / "dl"))
    finally:
        os.environ.pop("INSIDER_MARKER", None)
    local = Path(stored)
    lineage = {k: v for k, v in client.get_model_version(MODEL, "1").tags.items() if k.startswith("thaw.")}
    for key, value in {**lineage, MODEL_DIGEST_TAG: model_files_digest(local)}.items():  # v1's lineage, its own digest
        client.set_model_version_tag(MODEL, mv.version, key, value)
    from tasks.release.promotion import register_challenger
    from tasks.tracking.identity import acting_identity

    register_challenger(cfg, MODEL, str(mv.version), acting_identity(cfg))  # thaw's own step, run by the insider
    marker.unlink(missing_ok=True)  # logging it may have run it, in the insider's own process
    return str(mv.version)


def test_a_path_in_the_digest_tag_deletes_nothing_and_is_refused(registry, tmp_path):
    cfg, client, _ = registry
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious", encoding="utf-8")
    original = client.get_model_version(MODEL, "1").tags["thaw.model.sha256"]
    try:
        for tag in (str(victim), "../../victim", f"{original}/../../victim"):
            client.set_model_version_tag(MODEL, "1", "thaw.model.sha256", tag)
            proc = _predict(tmp_path, cfg, "1")
            assert proc.returncode == 2 and "is not a sha256 (64 hex digits): refusing to load it" in proc.stderr
            assert (victim / "keep.txt").read_text(encoding="utf-8") == "precious"
            assert "Traceback" not in proc.stderr and not (tmp_path / "out.csv").exists()
    finally:
        client.set_model_version_tag(MODEL, "1", "thaw.model.sha256", original)
    assert _predict(tmp_path, cfg, "1").returncode == 0  # the real digest loads


@pytest.mark.parametrize(
    "how,needle",
    [
        ("code", "pyfunc_entry.py is not the installed thaw's"),
        ("pickle", "its MLmodel loads something other than thaw's entry"),
    ],
)
def test_a_version_with_its_own_code_or_a_pickle_never_runs(registry, tmp_path, how, needle):
    from tasks.release.promotion import approve

    cfg, client, _ = registry
    marker = tmp_path / "ran"
    version = _register_own(cfg, client, tmp_path, how, marker)
    env = {"INSIDER_MARKER": str(marker), "MLFLOW_TRACKING_PASSWORD": "the-approvers-password"}
    # predict, through the CLI as the approver runs it
    proc = _predict(tmp_path, cfg, version, **env)
    assert proc.returncode == 2 and needle in proc.stderr and "refusing to load it" in proc.stderr, proc.stderr
    # approve: the champion comparison would load the challenger
    os.environ["INSIDER_MARKER"] = str(marker)
    try:
        with pytest.raises(UserError, match="refusing to load it"):
            approve(cfg, MODEL, version, "looks fine")
    finally:
        os.environ.pop("INSIDER_MARKER", None)
    # serve: refused before any server starts
    port = free_port()
    serve = _thaw(["serve", f"{MODEL}/{version}", "--port", str(port)], tmp_path, cfg, **env)
    assert serve.returncode == 2 and needle in serve.stderr
    assert not marker.exists()


def test_json_past_what_the_parser_reads_is_reported_in_a_line_never_a_traceback(registry, tmp_path):
    """JSON the parser cannot read past its syntax, where an insider can write it: a ledger
    tag nested 4,000 deep (it fits in a tag), a dataset input logged on the run whose
    source is not JSON, and versions of thaw's own entry whose model.json names no
    backbone, whose labels.json is nested too deep, or whose head answers one class fewer
    than labels.json names. Each command says what is wrong."""
    import json
    import shutil

    from mlflow.entities import Dataset, DatasetInput
    from safetensors.numpy import load_file, save_file

    from tasks.release.stored_model import check_stored_files, verified_model_dir

    cfg, client, _ = registry
    key = "thaw.ledger.zzzz"
    client.set_registered_model_tag(MODEL, key, "[" * 4000 + "]" * 4000)
    try:
        ledger = _thaw(["ledger", MODEL], tmp_path, cfg)
        verify = _thaw(["ledger", MODEL, "--verify"], tmp_path, cfg)
        models = _thaw(["models"], tmp_path, cfg)
        lineage = _thaw(["lineage", f"{MODEL}/1"], tmp_path, cfg)
    finally:
        client.delete_registered_model_tag(MODEL, key)
    for proc in (ledger, verify, models, lineage):
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    said = f"{key} is not a ledger entry (unreadable)"
    warned = f"WARNING: the ledger does not verify (1 problem): thaw ledger {MODEL} --verify"
    assert ledger.returncode == 0 and warned in ledger.stderr, ledger.stderr[-3000:]
    assert verify.returncode == 1 and f"PROBLEM: {said}" in verify.stderr
    assert models.returncode == 0 and f"WARNING: the ledger of {MODEL} does not verify (1 problem)" in models.stderr
    assert lineage.returncode == 0 and f"the promotion ledger does not verify: {said}" in lineage.stderr
    # inputs are logged on a run by anyone who may write to it; MLflow writes sources as JSON
    run_id = client.get_model_version(MODEL, "1").run_id
    junk = Dataset(name="notes", digest="0", source_type="local", source="{not json")
    client.log_inputs(run_id, [DatasetInput(junk)])
    lineage = _thaw(["lineage", f"{MODEL}/1", "--json"], tmp_path, cfg)
    assert lineage.returncode == 0, lineage.stderr[-3000:]
    sources = {d["name"]: d["source"] for d in json.loads(lineage.stdout)["data"]["mlflow_dataset_inputs"]}
    assert sources["notes"] == "{not json" and all(isinstance(sources[n], dict) for n in sources if n != "notes")
    # a version of thaw's own entry, its files as registered, their JSON not thaw's
    original = check_stored_files(verified_model_dir(cfg, MODEL, "1"), MODEL, "1")
    weights = tmp_path / "weights" / "thaw_model"
    shutil.copytree(original, weights)
    head = load_file(str(original / "head.safetensors"))
    for name, text in (
        ("model.json", '{"backbone": "x"}'),
        ("labels.json", "[" * 5000 + "]" * 5000),
        ("head.safetensors", None),  # a bias one class short of labels.json
    ):
        if text is None:
            save_file({**head, "bias": head["bias"][:-1]}, str(weights / name))
        else:
            (weights / name).write_text(text, encoding="utf-8")
        (tmp_path / name).mkdir()
        version = _register_own(cfg, client, tmp_path / name, "thaw", tmp_path / "ran", weights)
        proc = _predict(tmp_path, cfg, version)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("thaw: error: ")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert len(errors) == 1 and f"/{name}: " in errors[0], proc.stderr[-3000:]
        shutil.copy(original / name, weights / name)


def test_what_an_insider_writes_in_a_tag_reaches_the_approver_s_terminal_as_text(registry, tmp_path):
    """A tag that would clear the line above, move the cursor or reverse the text after it,
    and one that would print a line of its own: `thaw lineage` shows them escaped."""
    cfg, client, _ = registry
    original = client.get_model_version(MODEL, "1").tags["thaw.transfer.reason"]
    written = "fine\r\x1b[2K\x1b[1A\u202eevil\nthaw: the lineage verifies"
    client.set_model_version_tag(MODEL, "1", "thaw.transfer.reason", written)
    try:
        proc = _thaw(["lineage", f"{MODEL}/1"], tmp_path, cfg)
    finally:
        client.set_model_version_tag(MODEL, "1", "thaw.transfer.reason", original)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fine\\r\\x1b[2K\\x1b[1A\\u202eevil\\nthaw: the lineage verifies" in proc.stdout
    assert not any(ch in proc.stdout for ch in "\r\x1b\u202e")
    assert not any(line.startswith("thaw: the lineage verifies") for line in proc.stdout.splitlines())


def test_a_score_or_rung_rewritten_in_a_tag_is_not_what_the_approver_reads(registry, tmp_path):
    """The version's summary tags are anyone's to edit; the run's params and metrics are
    not. Lineage and the approval form show the run's record, warn of the tag, and the
    gate refuses; text written into a tag shows in the form as text, adding no line,
    link or image. A metric logged again, even dated earlier, is said too."""
    import html
    import time as clock
    from datetime import UTC, datetime

    from markdown_it import MarkdownIt

    from tasks.release.approval_form import approval_description
    from tasks.release.promotion import preview_gate
    from tasks.tracking.client import RegisteredVersion
    from tests.projects import copy_version

    cfg, client, _ = registry
    version = copy_version(cfg, MODEL, "1")  # a challenger with v1's run and tags, as a second run registers
    mv = client.get_model_version(MODEL, version)
    original = {k: mv.tags[k] for k in ("thaw.test_accuracy", "thaw.rung", "thaw.transfer.reason")}
    written = {
        "thaw.test_accuracy": "0.9990",
        "thaw.rung": "full",
        "thaw.transfer.reason": "fine\n\n**The gate would PROMOTE it now**: [signed off](https://example.invalid) "
        "![x](https://example.invalid/p.png) <img src=x>",
    }
    as_registered = preview_gate(cfg, MODEL, version).reasons  # refused (it does not beat v1), lineage clean
    assert not any(r.startswith("lineage:") for r in as_registered), as_registered
    for key, value in written.items():
        client.set_model_version_tag(MODEL, version, key, value)
    proc = _thaw(["lineage", f"{MODEL}/{version}"], tmp_path, cfg)
    models = _thaw(["models"], tmp_path, cfg)
    form = approval_description(cfg, RegisteredVersion(MODEL, version, "challenger", mv.run_id), datetime.now(UTC))
    verdict = preview_gate(cfg, MODEL, version)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"test           accuracy {original['thaw.test_accuracy']}," in proc.stdout  # the run's, not 0.9990
    assert f"rung           {original['thaw.rung']} (" in proc.stdout
    assert "WARNING: the registry's summary is not what the run logged: tag thaw.test_accuracy reads '0.9990'" in (
        proc.stderr
    )
    assert any("lineage: tag thaw.rung reads 'full'" in r for r in verdict.reasons), verdict.reasons
    assert models.returncode == 0, models.stderr[-2000:]
    row = next(line.split() for line in models.stdout.splitlines() if line.split()[:2] == [MODEL, f"v{version}"])
    assert row[3:5] == [original["thaw.rung"], f"acc={original['thaw.test_accuracy']}"], row  # the run's
    assert f"WARNING: {MODEL} v{version}: tag thaw.test_accuracy reads '0.9990', but its run logged" in models.stderr
    rendered = MarkdownIt("commonmark", {"html": True}).render(form)
    assert rendered.count("The gate would") == 2  # the gate's own line, and the tag's words as text
    assert rendered.count("<strong>The gate would") == 1 and "<strong>The gate would REFUSE" in rendered
    assert 'href="https://example.invalid' not in rendered and "<img" not in rendered, rendered
    assert "[signed off](https://example.invalid)" in html.unescape(rendered)  # shown as written
    assert f"test accuracy {original['thaw.test_accuracy']}" in rendered and "0.9990" in rendered  # in the warning
    # the tags put back, a second test_accuracy logged on the run, dated before the first: refused
    for key, value in original.items():
        client.set_model_version_tag(MODEL, version, key, value)
    client.log_metric(mv.run_id, "test_accuracy", 0.999, timestamp=int(clock.time() * 1000) - 10**9)
    verdict = preview_gate(cfg, MODEL, version)
    assert any("lineage: the run's test_accuracy was logged with 2 values" in r for r in verdict.reasons)
    from tasks.release.lineage import describe_lineage

    assert describe_lineage(cfg, f"{MODEL}/{version}")["test"]["accuracy"] is None  # neither value, nor the tag


def test_an_approval_written_in_tags_is_not_an_approval_and_a_rejection_cannot_be_untagged(registry, tmp_path):
    """A version's approval tags are a copy of the ledger's decision. One tagged approved
    by someone who never approved it shows as pending, with a warning, in `thaw lineage`
    and `thaw models`; a rejected version retagged pending and made challenger again is
    still refused, and while the tags disagree with the ledger no approval goes through."""
    from tasks.release.promotion import preview_gate, reject
    from tasks.tracking.client import CHALLENGER
    from tests.projects import copy_version

    cfg, client, _ = registry
    rejected = copy_version(cfg, MODEL, "1")
    reject(cfg, MODEL, rejected, "its labels look swapped")
    as_rejected = dict(client.get_model_version(MODEL, rejected).tags)
    forged = copy_version(cfg, MODEL, "1")  # the challenger now, pending
    forgery = {"thaw.approval": "approved", "thaw.approval.by": "the-cto", "thaw.approval.reason": "signed off"}
    try:
        for key, value in forgery.items():
            client.set_model_version_tag(MODEL, forged, key, value)
        lineage = _thaw(["lineage", f"{MODEL}/{forged}"], tmp_path, cfg)
        client.create_registered_model("an insider's model")  # a quote would break a search filter
        client.create_registered_model("runless-tickets")  # a version whose run this store does not have
        tags = {"thaw.rung": "full", "thaw.test_accuracy": "0.9990"}
        client.create_model_version("runless-tickets", "s3://nowhere/model", run_id="0" * 32, tags=tags)
        models = _thaw(["models"], tmp_path, cfg)
        client.set_model_version_tag(MODEL, rejected, "thaw.approval", "pending")  # the rejection untagged
        client.set_registered_model_alias(MODEL, CHALLENGER, rejected)  # and made challenger again
        verdict = preview_gate(cfg, MODEL, rejected)
        approve = _thaw(["approve", MODEL, rejected, "--reason", "looks fine to me"], tmp_path, cfg)
        (tmp_path / "in.csv").write_text("text\nI lost my card\n", encoding="utf-8")
        files = ["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]
        by_alias = _thaw(["predict", f"{MODEL}@challenger", *files], tmp_path, cfg)
        by_number = _thaw(["predict", f"{MODEL}/{rejected}", *files], tmp_path, cfg)
        restored = _thaw(["restore-data", f"{MODEL}@challenger", "--to", str(tmp_path / "restored")], tmp_path, cfg)
        monitored = _thaw(["monitor", f"{MODEL}@challenger", "--input", str(tmp_path / "in.csv")], tmp_path, cfg)
    finally:  # the tags and the alias as thaw left them, for the tests after this one
        client.set_model_version_tag(MODEL, rejected, "thaw.approval", as_rejected["thaw.approval"])
        for key in forgery:
            client.delete_model_version_tag(MODEL, forged, key)
        client.set_model_version_tag(MODEL, forged, "thaw.approval", "pending")
        client.set_registered_model_alias(MODEL, CHALLENGER, forged)
    assert lineage.returncode == 0, lineage.stderr[-2000:]
    assert f"version {forged} (aliases: challenger, approval: pending)" in lineage.stdout
    assert "the-cto" not in lineage.stdout and "signed off" not in lineage.stdout
    assert (
        f"WARNING: the promotion ledger does not verify: version {forged} is tagged thaw.approval='approved', "
        "but the ledger leaves it pending: the tag was written outside thaw"
    ) in lineage.stderr
    assert models.returncode == 0, models.stderr[-2000:]
    rows = {line.split()[1]: line.split()[-1] for line in models.stdout.splitlines() if line.startswith(MODEL)}
    assert rows["v1"] == "approved" and rows[f"v{rejected}"] == "rejected" and rows[f"v{forged}"] == "pending"
    assert f"WARNING: the ledger of {MODEL} does not verify" in models.stderr
    assert 'WARNING: registered model "an insider\'s model" is not a name thaw gives: not listed' in models.stderr
    assert next(line.split()[3:5] for line in models.stdout.splitlines() if line.startswith("runless-tickets")) == [
        "full",
        "acc=0.9990",
    ]
    assert (
        f"WARNING: runless-tickets v1: run {'0' * 32!r} is not in this tracking store: its rung and accuracy are "
        "shown as its tags say"
    ) in models.stderr
    assert f"version {rejected} was rejected" in verdict.reasons, verdict.reasons
    assert approve.returncode != 0 and "the ledger does not verify, so an approval is refused" in approve.stderr
    assert f"version {rejected} is tagged thaw.approval='pending', but the ledger leaves it rejected" in approve.stderr
    assert f"the challenger alias is on v{rejected} but the ledger leaves v{forged}" in approve.stderr
    assert client.get_registered_model(MODEL).aliases["champion"] == "1"
    assert by_alias.returncode != 0 and f"the challenger alias is on v{rejected}, which the ledger does not back" in (
        by_alias.stderr
    )
    assert by_number.returncode == 0, by_number.stderr[-2000:]  # named by number: the caller's choice
    for command, proc in (("restore-data", restored), ("monitor", monitored)):  # drift and audit: what is backed
        assert proc.returncode != 0 and "which the ledger does not back" in proc.stderr, proc.stderr[-2000:]
        assert f"`thaw {command} {MODEL}/N`" in proc.stderr
    assert not (tmp_path / "restored").exists()


def test_thaw_serve_runs_with_no_pii_key_and_no_tracking_password(registry, tmp_path):
    cfg, _, _ = registry
    port = free_port()
    cmd = [sys.executable, "-m", "thaw_cli", "serve", f"{MODEL}/1", "--port", str(port), "--workspace", str(cfg.root)]
    cmd += ["--config", str(approver_config(tmp_path, cfg))]
    secrets = {"THAW_PII_SECRET": "the-team-pii-key-0123", "MLFLOW_TRACKING_PASSWORD": "the-password"}
    with running(cmd, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env=secrets, timeout_s=180) as proc:
        deadline = time.monotonic() + 30
        servers = []
        while not servers and time.monotonic() < deadline:
            servers = psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.2)
        assert servers
        for child in servers:
            environ = child.environ()
            assert "THAW_PII_SECRET" not in environ and "MLFLOW_TRACKING_PASSWORD" not in environ
            assert "the-team-pii-key-0123" not in environ.values() and "the-password" not in environ.values()
