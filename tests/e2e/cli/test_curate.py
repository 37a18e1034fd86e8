"""`thaw curate` as a user runs it, in one process and with detection in forked workers.

Inputs of ``curation.pii.parallel_min_rows`` rows or more (5,000 by default) are scrubbed
by workers forked from the CLI's flow run; the same settings here turn the pool on for a
small file, so the suite runs that path the way a large input does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from thaw.demo_data import generate_support_tickets

pytestmark = pytest.mark.e2e

SPLITS = ("train.csv", "validation.csv", "test.csv")
ONE_PROCESS = {"workers": 1}
FORKED = {"workers": 2, "parallel_min_rows": 1, "chunk_rows": 40}


def _curate(
    tmp_path: Path, name: str, tickets: Path, pii: dict, output: str = "curated"
) -> tuple[subprocess.CompletedProcess, Path]:
    workspace, output = tmp_path / name, tmp_path / f"{name}-{output}"
    workspace.mkdir(exist_ok=True)
    config = workspace / "thaw.yaml"
    settings = {
        "data": {"text_column": "message", "label_column": "intent", "id_column": "ticket_id"},
        "curation": {"expectations": {"min_rows": 50}, "pii": pii},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    cmd = [sys.executable, "-m", "thaw_cli", "curate", "--config", str(config), "--workspace", str(workspace)]
    cmd += ["--input", str(tickets), "--output", str(output)]
    env = {**os.environ, "THAW_PII_SECRET": "one-key-for-both-curations-of-this-test"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert list((workspace / ".thaw" / "curate").iterdir()) == []  # its work is published, none left behind
    return proc, output


def test_forked_detection_workers_curate_the_same_bytes_as_one_process(tmp_path):
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(generate_support_tickets(300, seed=9)[0], encoding="utf-8")
    addresses = set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", tickets.read_text(encoding="utf-8")))
    assert len(addresses) > 10  # the tickets carry addresses for the detector to find

    one, one_dir = _curate(tmp_path, "one", tickets, ONE_PROCESS)
    forked, forked_dir = _curate(tmp_path, "forked", tickets, FORKED)

    assert "rows/s in 1 process;" in one.stdout and "rows/s in 2 processes;" in forked.stdout
    reports = [
        json.loads((d / "curation_report.json").read_text(encoding="utf-8"))["pii"] for d in (one_dir, forked_dir)
    ]
    assert [r["processes"] for r in reports] == [1, 2]
    assert reports[0]["rows_changed"] == reports[1]["rows_changed"] > 100
    for split in SPLITS:
        curated = (forked_dir / split).read_bytes()
        assert curated == (one_dir / split).read_bytes(), split
        assert not [a for a in addresses if a.encode() in curated], split

    # the same inputs, settings and key again: the cached curation is published, and the
    # speed it prints is said to be the one of the curation that made it
    again, again_dir = _curate(tmp_path, "one", tickets, ONE_PROCESS, output="again")
    assert "rows changed (reused: the same inputs, settings and PII key were curated before, at " in again.stdout
    assert "rows/s in 1 process);" in again.stdout
    for split in SPLITS:
        assert (again_dir / split).read_bytes() == (one_dir / split).read_bytes(), split
    # into the directory an earlier curation wrote: its files are replaced, not refused
    into_one, _ = _curate(tmp_path, "one", tickets, ONE_PROCESS)
    assert "rows changed (reused:" in into_one.stdout


def test_data_that_fails_its_checks_publishes_nothing_and_names_the_report_it_kept(tmp_path):
    """Two rows per class: curation stops at its data checks. Nothing reaches the output
    directory, the work directory stays, and the command says which file lists every check."""
    workspace, output = tmp_path / "ws", tmp_path / "curated"
    workspace.mkdir()
    rows = ["where is my parcel,shipping", "the courier never rang,shipping", "refund my card,billing"]
    (tmp_path / "few.csv").write_text("text,label\n" + "\n".join(rows + ["billed twice,billing"]) + "\n", "utf-8")
    cmd = [sys.executable, "-m", "thaw_cli", "curate", "--workspace", str(workspace)]
    cmd += ["--input", str(tmp_path / "few.csv"), "--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "curated data failed its expectations" in proc.stderr
    report = Path(re.search(r"^every data check, passed and failed: (.+)$", proc.stdout, re.M).group(1))
    assert report.parent.parent == workspace / ".thaw" / "curate"  # the work directory, kept to be read
    assert "**FAILED: training did not start**" in report.read_text("utf-8")
    assert not any((output / split).exists() for split in SPLITS)


def test_a_guessable_pii_key_stops_curation_in_one_line_before_anything_is_written(tmp_path):
    """A short key in the variable, and an empty key file named in the config (once an
    empty HMAC key): `thaw curate` names where the key came from and writes nothing."""
    (tmp_path / "in.csv").write_text("text,label\nwhere is my parcel,shipping\nrefund my card,billing\n", "utf-8")
    empty = tmp_path / "pii.key"
    empty.write_bytes(b"")
    config = tmp_path / "thaw.yaml"
    config.write_text(yaml.safe_dump({"curation": {"pii": {"secret_file": str(empty)}}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "THAW_PII_SECRET"}
    for where, extra, said in (
        ("THAW_PII_SECRET", {"THAW_PII_SECRET": "changeme"}, "the PII key is 8 bytes"),
        (str(empty), {}, "the PII key is 0 bytes"),
    ):
        output = tmp_path / f"curated-{len(extra)}"
        cmd = [sys.executable, "-m", "thaw_cli", "curate", "--workspace", str(tmp_path / "ws")]
        cmd += ["--input", str(tmp_path / "in.csv"), "--output", str(output)]
        cmd += [] if extra else ["--config", str(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env | extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("thaw: error:")]
        assert errors == [errors[0]] and errors[0].startswith(f"thaw: error: {where}: {said}; it needs at least 16")
        assert not output.exists()
