"""The DVC files thaw keeps in git (``data.dvc``, ``dvc.yaml``, the curated splits'
``.dvc`` files) change on every run, so two branches that both ran thaw conflict on
merge. DVC refuses such a file at its first ``dvc add``; thaw refuses it first, in one
line naming the file and line, before a run starts, and a task never retries bad input."""

from __future__ import annotations

import pytest

from tasks.versioning.snapshots import check_tracked_files
from thaw.config import ThawConfig
from thaw.errors import UserError, retry_unless_user_error

CONFLICTED = """outs:
<<<<<<< HEAD
- md5: 0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e.dir
=======
- md5: 9f8e7d6c5b4a39281706f5e4d3c2b1a0.dir
>>>>>>> other-branch
  size: 123456
  nfiles: 1
  path: data
"""
GOOD_DVC = "outs:\n- md5: 0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e.dir\n  size: 10\n  nfiles: 1\n  path: data\n"


@pytest.fixture
def cfg(tmp_path):
    return ThawConfig.model_validate({"model_name": "tickets", "workspace": str(tmp_path)})


@pytest.mark.parametrize(
    ("relpath", "text", "said"),
    [
        ("data.dvc", CONFLICTED, "data.dvc: holds a merge conflict (line 2), which DVC refuses; resolve it in git"),
        ("dvc.yaml", "metrics:\n- a.json\n=======\n- b.json\n", "dvc.yaml: holds a merge conflict (line 3)"),
        ("dvc.yaml", "metrics: [a.json\n", "dvc.yaml: not valid YAML (line 2), which DVC refuses"),
        ("dvc.yaml", "- a.json\n", "dvc.yaml: not a DVC project file"),
        ("dvc.yaml", "metrics: " + "[" * 3000 + "]" * 3000 + "\n", "dvc.yaml: not valid YAML, which DVC refuses"),
        ("data.dvc", "md5: abc\n", "data.dvc: not a DVC file (no 'outs' list)"),
        ("data.dvc", "outs: []\n", "data.dvc: not a DVC file (no 'outs' list)"),
        ("datasets/tickets/0a1b/train.csv.dvc", CONFLICTED, "train.csv.dvc: holds a merge conflict (line 2)"),
    ],
)
def test_a_dvc_file_dvc_would_refuse_is_refused_first_in_one_line(cfg, relpath, text, said):
    path = cfg.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as raised:
        check_tracked_files(cfg)
    message = str(raised.value)
    assert message.startswith(str(cfg.root)) and said in message and "\n" not in message
    assert path.read_text(encoding="utf-8") == text  # left as it is, for git to resolve


def test_bytes_that_are_not_text_are_refused(cfg):
    (cfg.root / "data.dvc").write_bytes(b"outs:\n- md5: \xff\xfe\n")
    with pytest.raises(UserError, match=r"data\.dvc: not UTF-8 text"):
        check_tracked_files(cfg)


def test_files_as_dvc_writes_them_and_none_at_all_pass(cfg):
    check_tracked_files(cfg)  # a workspace thaw never ran in
    (cfg.root / "data.dvc").write_text(GOOD_DVC, encoding="utf-8")
    (cfg.root / "dvc.yaml").write_text("metrics:\n- datasets/tickets/curation_metrics.json\n", encoding="utf-8")
    (cfg.root / "datasets" / "tickets" / "0a1b").mkdir(parents=True)
    (cfg.root / "datasets" / "tickets" / "0a1b" / "train.csv.dvc").write_text(GOOD_DVC, encoding="utf-8")
    check_tracked_files(cfg)
    (cfg.root / "dvc.yaml").write_text("", encoding="utf-8")  # emptied: DVC reads it as no stages
    check_tracked_files(cfg)


def test_a_task_retries_what_may_pass_on_a_second_try_but_never_bad_input():
    from prefect.states import Failed

    assert retry_unless_user_error(None, None, Failed(data=RuntimeError("the remote blinked"))) is True
    assert retry_unless_user_error(None, None, Failed(data=UserError("data.dvc: holds a merge conflict"))) is False
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, PERMISSION_DENIED, UNAUTHENTICATED

    for code, retried in ((UNAUTHENTICATED, False), (PERMISSION_DENIED, False), (INTERNAL_ERROR, True)):
        refused = MlflowException("refused", error_code=code)
        assert retry_unless_user_error(None, None, Failed(data=refused)) is retried, code


def test_a_failed_dvc_command_keeps_dvcs_own_verdict(tmp_path):
    """What DVC says first is its verdict; the lines after are detail (a scheduled run that
    meets such a file before thaw's check reads this)."""
    import subprocess

    from tasks.versioning.snapshots import DvcError, run_dvc

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run_dvc(tmp_path, "init", "-q")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hi\n", encoding="utf-8")
    run_dvc(tmp_path, "add", "-q", "data")
    (tmp_path / "data.dvc").write_text(CONFLICTED, encoding="utf-8")
    with pytest.raises(
        DvcError, match=r"dvc add data failed: '\./data\.dvc' is invalid \(possible merge conflicts\)\."
    ):
        run_dvc(tmp_path, "add", "data")


def test_dvc_sends_no_usage_report_whoever_calls_it(tmp_path, monkeypatch):
    """Called without thaw's environment (a notebook calling a task), a dvc command still
    runs with DVC's analytics off: with them on, it leaves its report in the temporary
    directory and starts a daemon to send it (seen: {"cmd_class": "CmdDaemonAnalytics", ...})."""
    import subprocess
    import time

    from tasks.versioning.snapshots import run_dvc

    for name in ("DVC_NO_ANALYTICS", "DVC_NO_UPDATER"):
        monkeypatch.delenv(name, raising=False)
    reports = tmp_path / "tmp"
    reports.mkdir()
    monkeypatch.setenv("TMPDIR", str(reports))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    run_dvc(repo, "init", "-q")
    deadline = time.monotonic() + 3  # the report is written before dvc exits; its daemon's after
    while time.monotonic() < deadline:
        assert not list(reports.iterdir())
        time.sleep(0.1)
