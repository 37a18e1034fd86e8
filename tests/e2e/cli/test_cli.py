"""The CLI as a user runs it: clean one-line errors for user mistakes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def thaw(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thaw_cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_missing_column_fails_cleanly(tmp_path: Path):
    (tmp_path / "d.csv").write_text("id,body,label\n1,hello,x\n", encoding="utf-8")
    proc = thaw("run", "--train", "d.csv", "--text-column", "text", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("thaw: error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.strip().endswith("d.csv: column 'text' not found (columns are: id, body, label)")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / ".thaw" / "mlflow.db").exists()  # nothing started for a typo


@pytest.mark.parametrize(
    "content,needle", [(b"id,text,label\n1,caf\xe9,x\n", "line 2 is not valid UTF-8"), (b"", "file is empty")]
)
def test_bad_bytes_and_empty_file_fail_cleanly(tmp_path: Path, content: bytes, needle: str):
    (tmp_path / "d.csv").write_bytes(content)
    proc = thaw("run", "--train", "d.csv", cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_merge_conflict_left_in_data_dvc_stops_the_run_before_it_starts(tmp_path: Path):
    """Two branches that both ran thaw changed data.dvc; git leaves its markers there on merge."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "a@example.com")
    git("config", "user.name", "a")
    dvc = "outs:\n- md5: {}.dir\n  size: 10\n  nfiles: 1\n  path: data\n"
    (tmp_path / "data.dvc").write_text(dvc.format("0" * 32), encoding="utf-8")
    git("add", "data.dvc")
    git("commit", "-qm", "a run")
    git("checkout", "-qb", "other")
    (tmp_path / "data.dvc").write_text(dvc.format("1" * 32), encoding="utf-8")
    git("commit", "-qam", "a run on another branch")
    git("checkout", "-q", "main")
    (tmp_path / "data.dvc").write_text(dvc.format("2" * 32), encoding="utf-8")
    git("commit", "-qam", "a run here")
    assert git("merge", "other").returncode != 0 and "<<<<<<<" in (tmp_path / "data.dvc").read_text(encoding="utf-8")
    (tmp_path / "d.csv").write_text("id,text,label\n1,hello,x\n", encoding="utf-8")

    proc = thaw("run", "--train", "d.csv", cwd=tmp_path)

    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"thaw: error: {tmp_path / 'data.dvc'}: holds a merge conflict (line 2), which DVC refuses; resolve it in git "
        "(for data.dvc either side will do: this run records data/ as it is now), then run again"
    ]
    assert not (tmp_path / ".thaw" / "mlflow.db").exists()  # no tracking run for a run that could not start


def test_a_summary_path_the_run_could_not_write_or_that_is_its_input_is_refused_before_it_starts(tmp_path: Path):
    rows = "id,text,label\n1,hello,x\n"
    (tmp_path / "d.csv").write_text(rows, encoding="utf-8")
    (tmp_path / "out").mkdir()
    for target, said in (("./d.csv", f"d.csv: is the input file {tmp_path / 'd.csv'}, which the summary would replace"),
                         ("out", "out: is a directory; give a file name")):  # fmt: skip
        proc = thaw("run", "--train", "d.csv", "--summary-json", target, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"thaw: error: --summary-json {said}"], (
            proc.stderr[-2000:]
        )
    assert (tmp_path / "d.csv").read_text(encoding="utf-8") == rows
    assert not (tmp_path / ".thaw" / "mlflow.db").exists()


def test_unknown_model_in_lineage_is_a_clean_error(tmp_path: Path):
    # where thaw never ran, the command says so and makes no store
    proc = thaw("lineage", "nope@champion", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and "not a thaw workspace" in proc.stderr and list(tmp_path.iterdir()) == []
    # in a workspace whose store does not have the model
    from mlflow import MlflowClient

    (tmp_path / ".thaw").mkdir()
    uri = f"sqlite:///{tmp_path / '.thaw' / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models() == []  # an empty store
    proc = thaw("lineage", "nope@champion", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and "no model version 'nope@champion'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unreadable_input_is_one_line_not_a_traceback(tmp_path: Path):
    """A file the user may not read. Root reads everything, so as root the command runs
    without the capabilities that override file permissions (setpriv, util-linux)."""
    import os
    import shutil

    (tmp_path / "d.csv").write_text("id,text,label\n1,hello,x\n", encoding="utf-8")
    os.chmod(tmp_path / "d.csv", 0o000)
    cmd = [sys.executable, "-m", "thaw_cli", "run", "--train", "d.csv"]
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "util-linux's setpriv drops root's override of file permissions"
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("thaw: error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.strip().endswith("d.csv: cannot read (Permission denied)")


def test_data_that_fails_its_expectations_is_told_one_failure_a_line(tmp_path: Path):
    """2 rows per class, the first thing a user may try: the run stops before training,
    and each failed expectation is a line of its own (a regression printed them as one
    line of literal \\n)."""
    rows = [
        ("where is my parcel from last week", "shipping"),
        ("the courier never rang the bell", "shipping"),
        ("refund the charge on my card please", "billing"),
        ("why was I billed twice this month", "billing"),
    ]
    (tmp_path / "d.csv").write_text(
        "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows), encoding="utf-8"
    )
    proc = thaw("run", "--train", "d.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr[proc.stderr.index("thaw: error: ") :].splitlines()
    assert lines[0] == "thaw: error: curated data failed its expectations; training did not start:"
    assert len(lines) >= 3 and all(line.startswith("  - ") for line in lines[1:]), lines
    assert any("min_examples_per_class" in line for line in lines[1:]) and "\\n" not in proc.stderr
    # and where every check is listed, passed and failed: a file that is there to read
    report = Path(re.search(r"^every data check, passed and failed: (.+)$", proc.stdout, re.M).group(1))
    assert report.name == "data_checks.md" and "**FAILED: training did not start**" in report.read_text("utf-8")
