"""A whole scheduled run on unchanged data: `thaw demo` twice in one workspace.

The second run reuses the curation (same inputs, settings and PII key), the frozen
features and heads, and the finished checkpoints of the fine-tuned rungs; what remains
is DVC's check that nothing changed, the scratch baseline, the one test evaluation
and the registration of the new version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import row


def _demo(ws: Path, summary: Path) -> float:
    env = {**os.environ, "THAW_PII_SECRET": "bench-fixed-secret-for-the-rerun-benchmark"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "thaw_cli", "demo", "--workspace", str(ws), "--summary-json", str(summary)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return time.perf_counter() - start


def run() -> dict:
    ws = Path(tempfile.mkdtemp(prefix="thaw-rerun-")) / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    first = _demo(ws, ws.parent / "first.json")
    second = _demo(ws, ws.parent / "second.json")
    caches = json.loads((ws.parent / "second.json").read_text())["caches"]
    print("Whole pipeline on unchanged data (thaw demo, then again in the same workspace)")
    row("first run / second run", f"{first / 60:.1f} min / {second / 60:.1f} min")
    row("speed-up", f"{first / second:.1f}x")
    row("second run reused", ", ".join(f"{k}={v}" for k, v in caches.items()))
    return {"first_s": first, "second_s": second, "speedup": first / second, "caches": caches}
