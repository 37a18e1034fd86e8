"""Promotion an auditor can follow, against a real MLflow tracking server on loopback:
approve, refuse, force, rollback, ledger, lineage re-verification, restore, serving."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import thaw
from tests.projects import altered_version, approver_config, copy_version, dead_lock_holder, ticket_project
from tests.servers import free_port, mlflow_server, running
from thaw.config import ThawConfig
from thaw.datasets import file_md5
from thaw.errors import UserError

pytestmark = pytest.mark.e2e
MODEL = "tickets"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_encoder, prefect_harness):
    """One pipeline run against a real tracking server, then more versions of the same model."""
    from flows.pipeline import thaw_pipeline
    from tasks.tracking.client import client_for

    base = tmp_path_factory.mktemp("promotion")
    workspace = base / "project"
    with mlflow_server(base / "mlflow") as uri:
        cfg = ThawConfig.model_validate(
            ticket_project(workspace, tiny_encoder, MODEL, 400, 3, tracking={"tracking_uri": uri})
        )
        thaw_pipeline(cfg)
        client = client_for(cfg)

        def new_version(**tags: str) -> str:
            return copy_version(cfg, MODEL, "1", **tags)

        yield cfg, client, new_version, workspace, uri, base


def _ledger(cfg) -> list[tuple[str, str, str]]:
    """(action, version, outcome) of every completed operation, in order."""
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for

    report = ledger_report(client_for(cfg), MODEL, None)
    assert report.ok, report.problems
    return [(e["action"], e["version"], e["outcome"]) for e in report.entries if e["phase"] == "completion"]


def _champion(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def test_register_approve_refuse_force_rollback_and_the_ledger(registry):
    from tasks.release.promotion import approve, reject, rollback

    cfg, client, new_version, _, _, _ = registry
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
    with pytest.raises(UserError, match="no previous champion|no champion"):
        rollback(cfg, MODEL, "nothing to roll back")
    approve(cfg, MODEL, "1", "first model, reviewed")
    assert _champion(client) == "1"
    v2 = new_version()
    with pytest.raises(UserError, match="does not beat champion v1 .*macro_f1 on \\d+ test rows unseen by both"):
        approve(cfg, MODEL, v2, "same model again")
    assert _champion(client) == "1"
    decision = approve(cfg, MODEL, v2, "incident 42: needs the new label set", force=True)
    assert decision.forced and _champion(client) == v2
    assert client.get_model_version(MODEL, v2).tags["thaw.approval.forced"] == "true"
    assert rollback(cfg, MODEL, "v2 misbehaves in production") == "1" and _champion(client) == "1"
    v3 = new_version()
    reject(cfg, MODEL, v3, "labels look wrong")
    with pytest.raises(UserError, match="was rejected|not the current challenger"):
        approve(cfg, MODEL, v3, "try anyway", force=True)
    with pytest.raises(UserError, match="has no version 99"):
        approve(cfg, MODEL, "99", "does not exist")
    assert _ledger(cfg) == [
        ("register", "1", "applied"),
        ("approve", "1", "applied"),
        ("register", v2, "applied"),
        ("approve", v2, "refused"),
        ("approve", v2, "applied"),
        ("rollback", "1", "applied"),
        ("register", v3, "applied"),
        ("reject", v3, "applied"),
        ("approve", v3, "refused"),
    ]
    mv = client.get_model_version(MODEL, v2)
    assert mv.tags["thaw.approval"] == "approved" and mv.tags["thaw.approval.by"]
    assert mv.tags["thaw.approval.identity"].startswith("not verified")  # this server has no authentication


def test_the_champion_is_compared_only_on_rows_it_never_trained_on(registry):
    """A challenger whose test split is the champion's own training data leaves nothing
    to compare on: refused, with the count of rows left out, unless forced. (Registered from
    a run of its own that logged no inputs: tags edited on a version of thaw's run would no
    longer say what that run logged, and be refused for it.)"""
    from tasks.release.promotion import approve

    cfg, client, _, _, _, _ = registry
    champion = client.get_model_version(MODEL, _champion(client)).tags
    leaky = altered_version(
        cfg,
        MODEL,
        "1",
        lambda weights: None,
        **{"thaw.curated.test.md5": champion["thaw.curated.train.md5"]},
        **{"thaw.curated.test.path": champion["thaw.curated.train.path"]},
    )
    with pytest.raises(
        UserError, match=r"no fair comparison with champion v\d+: 0 test rows unseen by both .*\d+ left out"
    ):
        approve(cfg, MODEL, leaky, "looks fine")


def test_a_ledger_edited_in_the_registry_fails_verification(registry, tmp_path):
    cfg, client, _, workspace, uri, _ = registry
    ok = _thaw(["ledger", MODEL, "--verify"], tmp_path, cfg)
    assert ok.returncode == 0 and "the ledger verifies" in ok.stdout, ok.stderr[-2000:]
    key = sorted(k for k in client.get_registered_model(MODEL).tags if k.startswith("thaw.ledger."))[1]
    original = client.get_registered_model(MODEL).tags[key]
    client.set_registered_model_tag(MODEL, key, original.replace('"by":"', '"by":"mallory-', 1))
    try:
        bad = _thaw(["ledger", MODEL, "--verify"], tmp_path, cfg)
        assert bad.returncode == 1 and f"PROBLEM: {key} was edited" in bad.stderr
    finally:
        client.set_registered_model_tag(MODEL, key, original)


def test_a_data_tag_pointed_at_other_data_is_caught_by_the_run_s_logged_inputs(registry, tmp_path):
    """An insider points a version's train digest at its test split: an object the remote
    holds, whose bytes hash to it, so the remote alone cannot tell. The dataset inputs its
    run logged, which no one can edit, can: the gate and restore refuse, lineage warns."""
    from tasks.release.promotion import approve
    from tasks.tracking.dataset_inputs import logged_data
    from tasks.versioning.restore import restore_data, verify_lineage

    cfg, client, new_version, _, _, _ = registry
    version = new_version()
    mv = client.get_model_version(MODEL, version)
    logged = logged_data(client, mv.run_id)
    assert {"curated.train", "curated.validation", "curated.test", "raw.train"} <= logged.keys()
    assert verify_lineage(cfg, mv.tags, logged).problems == ()  # as registered, all agree
    client.set_model_version_tag(MODEL, version, "thaw.curated.train.md5", mv.tags["thaw.curated.test.md5"])
    edited = client.get_model_version(MODEL, version).tags
    assert verify_lineage(cfg, edited).problems == ()  # the remote alone cannot tell
    edit = r"tag thaw.curated.train.md5 reads '[0-9a-f]{32}', but the run logged '[0-9a-f]{32}': the tag was edited"
    with pytest.raises(UserError, match=f"lineage: {edit}"):
        approve(cfg, MODEL, version, "looks fine")
    with pytest.raises(UserError, match=edit):
        restore_data(cfg, f"{MODEL}/{version}", tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    shown = _thaw(["lineage", f"{MODEL}/{version}"], tmp_path, cfg)
    warning = "WARNING: the data shown is not what the run logged: tag thaw.curated.train.md5"
    assert shown.returncode == 0 and warning in shown.stderr, shown.stderr[-2000:]
    # and the code it was trained with, beside the workspace's commit
    assert re.search(
        rf"\n  thaw           version {re.escape(thaw.__version__)}, commit ([0-9a-f]{{40}}(\+dirty)?|unknown)\n",
        shown.stdout,
    )


def test_a_digest_or_path_tag_that_is_not_one_becomes_no_path(registry, tmp_path):
    """Recorded digests and file names become paths in the remote and in the restore
    directory: anything but an md5 and a plain file name is refused before it does."""
    from tasks.versioning.restore import restore_split, verify_lineage

    cfg, client, _, _, _, _ = registry
    tags = client.get_model_version(MODEL, "1").tags
    md5 = tags["thaw.curated.train.md5"]
    outside = f"../../{md5[:2]}/{md5[2:]}"
    problems = verify_lineage(cfg, tags | {"thaw.curated.train.md5": outside, "thaw.raw.md5": "x" * 100_000}).problems
    assert f"the train digest recorded is not an md5: {outside!r}" in problems
    assert f"the raw data digest recorded is not an md5: {'x' * 40!r}" in problems
    with pytest.raises(UserError, match="the model version's train digest is not an md5"):
        restore_split(cfg, tags | {"thaw.curated.train.md5": outside}, "train", tmp_path / "a")
    for name in ("..", "/", "datasets/.."):
        with pytest.raises(UserError, match="the model version's train path names no file"):
            restore_split(cfg, tags | {"thaw.curated.train.path": name}, "train", tmp_path / "b" / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _thaw(args: list[str], tmp_path: Path, cfg: ThawConfig, config: Path | None = None) -> subprocess.CompletedProcess:
    """`thaw ARGS` as the approver runs it: their own config file (``config``, else one written now)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "thaw_cli",
            *args,
            "--workspace",
            str(cfg.root),
            "--config",
            str(config or approver_config(tmp_path, cfg)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_restore_data_is_byte_identical_after_the_workspace_copy_is_gone(registry, tmp_path):
    cfg, client, _, workspace, _, _ = registry
    mv = client.get_model_version_by_alias(MODEL, "champion")
    shutil.rmtree(workspace / "datasets")
    shutil.rmtree(workspace / ".dvc" / "cache", ignore_errors=True)
    dest = tmp_path / "restored"
    dest.mkdir()
    (dest / "train.csv").write_text("id,text,label\nmine,my own rows,x\n", encoding="utf-8")  # the user's file
    restore = ["restore-data", f"{MODEL}@champion", "--to", str(dest)]

    refused = _thaw(restore, tmp_path, cfg)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert f"{dest / 'train.csv'}: already there, and not {MODEL}/{mv.version}'s bytes" in refused.stderr
    assert (dest / "train.csv").read_text(encoding="utf-8") == "id,text,label\nmine,my own rows,x\n"
    assert sorted(p.name for p in dest.iterdir()) == ["train.csv"]  # nothing written beside it

    for args in ([*restore, "--replace"], restore):  # replaced when asked; kept as they are after that
        restored = _thaw(args, tmp_path, cfg)
        assert restored.returncode == 0, restored.stderr[-2000:]
        paths = dict(line.split(maxsplit=1) for line in restored.stdout.splitlines())
        assert set(paths) == {"train", "validation", "test"}, restored.stdout
        for split, path in paths.items():
            assert file_md5(Path(path)) == mv.tags[f"thaw.curated.{split}.md5"]


def test_champion_predicts_the_same_through_pyfunc_http_and_thaw_predict(registry, tmp_path):
    cfg, client, _, workspace, uri, _ = registry
    texts = ["I lost my card yesterday", "where is my refund for order #123456", "the app crashes"]
    pd.DataFrame({"ticket_id": ["a", "b", "c"], "message": texts}).to_csv(tmp_path / "in.csv", index=False)
    env_uri = {"MLFLOW_TRACKING_URI": uri}
    # 1. thaw predict (CLI)
    proc = _thaw(
        ["predict", f"{MODEL}@champion", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]
        + ["--text-column", "message", "--id-column", "ticket_id"],
        tmp_path,
        cfg,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    via_cli = pd.read_csv(tmp_path / "out.csv")["label"].tolist()
    # a one-column file with an empty value ("") and a blank line: one answer per row, in
    # order; written as Parquet, as its name asks
    (tmp_path / "gaps.csv").write_text('message\nI lost my card\n""\n\nthe app crashes\n', encoding="utf-8")
    gaps = _thaw(
        ["predict", f"{MODEL}@champion", "--input", str(tmp_path / "gaps.csv"), "--output", str(tmp_path / "g.parquet")]
        + ["--text-column", "message"],
        tmp_path,
        cfg,
    )
    assert gaps.returncode == 0 and "wrote 4 predictions" in gaps.stdout, gaps.stderr[-2000:]
    assert "note: 2 rows have no text (rows 2, 3)" in gaps.stdout
    answered = pd.read_parquet(tmp_path / "g.parquet")
    assert answered["row_id"].tolist() == ["gaps:1", "gaps:2", "gaps:3", "gaps:4"]
    assert answered["label"].iloc[[0, 3]].tolist() == [via_cli[0], via_cli[2]]
    # 2. mlflow.pyfunc.load_model in a fresh process
    code = (
        f"import json, mlflow.pyfunc, pandas as pd; m = mlflow.pyfunc.load_model('models:/{MODEL}@champion'); "
        f"print(json.dumps(m.predict(pd.DataFrame({{'text': {texts!r}}}))['label'].tolist()))"
    )
    fresh_env = {**os.environ, **env_uri, "TMPDIR": str(tmp_path)}  # MLflow downloads the model there and keeps it
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=fresh_env)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    via_pyfunc = json.loads(fresh.stdout.strip().splitlines()[-1])
    # 3. the documented HTTP path: `thaw serve` (mlflow models serve on the pyfunc) on loopback
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "thaw_cli",
        "serve",
        f"{MODEL}@champion",
        "--port",
        str(port),
        "--workspace",
        str(workspace),
        "--config",
        str(approver_config(tmp_path, cfg)),
    ]
    with running(cmd, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", timeout_s=180):
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            via_http = [row["label"] for row in json.loads(resp.read())["predictions"]]
    assert via_cli == via_pyfunc == via_http


def test_promotion_refuses_when_a_recorded_digest_is_missing_from_the_remote(registry):
    from tasks.release.promotion import approve
    from tasks.versioning.restore import open_remote

    cfg, client, new_version, _, _, _ = registry
    version = new_version()
    tags = client.get_model_version(MODEL, version).tags
    remote = open_remote(cfg, tags["thaw.dvc_remote"])
    Path(remote.object_path(tags["thaw.curated.train.md5"])).unlink()
    with pytest.raises(UserError, match="lineage: train md5 .* is missing from the remote"):
        approve(cfg, MODEL, version, "looks fine", force=False)


def test_a_model_whose_stored_files_changed_is_never_run(registry, tmp_path):
    """The pyfunc's code is executed on every approve, predict and serve: a version whose
    stored files no longer hash to the digest taken at registration is refused."""
    cfg, client, new_version, workspace, uri, base = registry
    version = new_version()
    digest = client.get_model_version(MODEL, version).tags["thaw.model.sha256"]
    stored = client.get_model_version_download_uri(MODEL, version).removeprefix("mlflow-artifacts:/")
    entry = next((base / "mlflow" / "artifacts" / stored).rglob("pyfunc_entry.py"))  # where the server keeps them
    original = entry.read_bytes()
    entry.write_bytes(original + b"\nimport os  # injected\n")
    shutil.rmtree(cfg.state_path / "models" / digest, ignore_errors=True)
    try:
        (tmp_path / "in.csv").write_text("text\nI lost my card\n", encoding="utf-8")
        proc = _thaw(
            ["predict", f"{MODEL}/{version}", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv")],
            tmp_path,
            cfg,
        )
        assert proc.returncode == 2 and "stored model files changed since registration" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "o.csv").exists()
    finally:
        entry.write_bytes(original)


def test_a_hung_holder_is_named_broken_by_thaw_unlock_and_recorded(registry, tmp_path):
    """An approver's process died holding the promotion lock, within its lease: the next
    approver's command says once that it waits, then gives up in one line, both naming the
    holder and `thaw unlock`; `thaw unlock` breaks the lock and says whose it was, the
    ledger records who broke it and why, and the command then goes through."""
    import yaml

    cfg, client, new_version, _, _, _ = registry
    version = new_version()
    dead_lock_holder(cfg, MODEL, "ana", f"approve v{version}")
    impatient = approver_config(tmp_path, cfg)  # waits 2 s, not the default 15 minutes; the lease is 60 s
    impatient.write_text(
        yaml.safe_dump({**yaml.safe_load(impatient.read_text()), "promotion": {"lock_wait_seconds": 2}}),
        encoding="utf-8",
    )

    def thaw_cli(*args: str) -> subprocess.CompletedProcess:
        return _thaw(list(args), tmp_path, cfg, config=impatient)

    waited = thaw_cli("reject", MODEL, version, "--reason", "labels look wrong")
    assert waited.returncode != 0 and "Traceback" not in waited.stderr, waited.stderr[-2000:]
    notice, error = waited.stderr.splitlines()  # said once when it starts waiting, then the error
    assert notice.startswith(f"waiting up to 2 s for the promotion lock of {MODEL}, held by ana (approve v"), notice
    assert error.startswith("thaw: error: ") and "held by ana (approve v" in error, error
    assert all(line.endswith(f"`thaw unlock {MODEL} --reason ...` breaks it now") for line in (notice, error))
    assert client.get_model_version(MODEL, version).tags.get("thaw.approval") != "rejected"

    unlocked = thaw_cli("unlock", MODEL, "--reason", "ana's approval process died")
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    assert re.search(rf"{MODEL}: promotion lock broken \(ana \(approve v{version}; pid \d+ on ", unlocked.stdout)
    ledger = thaw_cli("ledger", MODEL, "--json")
    assert ledger.returncode == 0, ledger.stderr[-2000:]
    record = [e for e in json.loads(ledger.stdout)["entries"] if e["action"] == "unlock"]
    assert len(record) == 1 and record[0]["reason"] == "ana's approval process died"
    assert record[0]["broken"].startswith(f"ana (approve v{version}; pid ")
    shown = thaw_cli("ledger", MODEL)
    assert re.search(r"unlock .* ana's approval process died \(broke the lock of ana \(approve v", shown.stdout)

    rejected = thaw_cli("reject", MODEL, version, "--reason", "labels look wrong")
    assert rejected.returncode == 0, rejected.stderr[-2000:]
    assert client.get_model_version(MODEL, version).tags["thaw.approval"] == "rejected"
