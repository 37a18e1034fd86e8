"""The ladder on CLINC150 (in-scope intents) with the offline MiniLM: every rung's
validation and test figures, the gate's decisions and the wall time of the ladder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import row

CLINC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "clinc150" / "data_full.json"


def prepare(workspace: Path) -> dict[str, Path]:
    """CLINC150 in-scope splits as CSV files under ``workspace/data/clinc150``."""
    data = json.loads(CLINC.read_text(encoding="utf-8"))
    out = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        path = workspace / "data" / "clinc150" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["id", "text", "intent"])
            writer.writerows((f"{key}-{i}", text, intent) for i, (text, intent) in enumerate(data[key]))
        out[split] = path
    return out


def run(workspace: Path) -> dict:
    if not CLINC.is_file():
        print(f"CLINC150 ladder: skipped ({CLINC} not found)")
        return {}
    workspace.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    files = prepare(workspace)
    (workspace / "clinc.yaml").write_text(
        "model_name: clinc150\ncuration:\n  expectations:\n    min_rows: 1000\n    min_examples_per_class: 10\n",
        encoding="utf-8",
    )
    summary_path = workspace / "summary.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "thaw_cli",
            "run",
            "--config",
            "clinc.yaml",
            "--train",
            str(files["train"]),
            "--validation",
            str(files["validation"]),
            "--test",
            str(files["test"]),
            "--text-column",
            "text",
            "--label-column",
            "intent",
            "--id-column",
            "id",
            "--summary-json",
            str(summary_path),
        ],
        cwd=workspace,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    s = json.loads(summary_path.read_text())
    print(f"CLINC150 ladder (in-scope, {s['curation']['splits']} rows after curation)")
    for r in s["rungs"]:
        test = r.get("test") or {}
        mark = " (selected)" if r["selected"] else (" (test not used for selection)" if test else "")
        row(
            f"{r['rung']}: validation acc / macro-F1",
            f"{r['validation']['accuracy']:.4f} / {r['validation']['macro_f1']:.4f}",
        )
        if test:
            row(f"{r['rung']}: test accuracy{mark}", f"{test['accuracy']:.4f}")
    for d in s["gate"]["decisions"]:
        print(f"    gate after {d['after']}: {d['action']} - {d['reason']}")
    row("ladder wall time", f"{s['gate']['ladder_seconds'] / 60:.1f} min")
    row("whole run wall time (curation to registration)", f"{wall / 60:.1f} min")
    return {"summary": s, "wall_seconds": wall}


if __name__ == "__main__":
    import tempfile

    run(Path(tempfile.mkdtemp(prefix="thaw-clinc-")) / "ws")
