"""The ladder on CLINC150 (in-scope intents) with the offline MiniLM, as a user runs it
(`thaw run`): full data with its own validation and test files, and 10 examples per
class (no validation file: thaw carves it, finds it too small, cross-validates). Every
rung's validation and test figures, the gate's decisions, the decision table's
suggestion and the wall time."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.common import row

CLINC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "clinc150" / "data_full.json"
SHOTS_SEED = 13


def _write(path: Path, pairs: list[tuple[str, str]], prefix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "text", "intent"])
        writer.writerows((f"{prefix}-{i}", text, intent) for i, (text, intent) in enumerate(pairs))
    return path


def prepare(workspace: Path, shots: int | None) -> dict[str, Path]:
    """CLINC150 in-scope splits as CSV files under ``workspace/data/clinc150``: all of them,
    or ``shots`` training examples per intent (seeded) and the test file."""
    data = json.loads(CLINC.read_text(encoding="utf-8"))
    out = {"test": _write(workspace / "data" / "clinc150" / "test.csv", data["test"], "test")}
    if shots is None:
        out["train"] = _write(workspace / "data" / "clinc150" / "train.csv", data["train"], "train")
        out["validation"] = _write(workspace / "data" / "clinc150" / "validation.csv", data["val"], "val")
        return out
    rng, by_intent = random.Random(SHOTS_SEED), {}
    for text, intent in data["train"]:
        by_intent.setdefault(intent, []).append((text, intent))
    few = [pair for intent in sorted(by_intent) for pair in rng.sample(by_intent[intent], shots)]
    out["train"] = _write(workspace / "data" / "clinc150" / f"train-{shots}shot.csv", few, "train")
    return out


def run_one(workspace: Path, shots: int | None) -> dict:
    workspace.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    files = prepare(workspace, shots)
    (workspace / "clinc.yaml").write_text(
        "model_name: clinc150\ncuration:\n  expectations:\n    min_rows: 1000\n    min_examples_per_class: 5\n",
        encoding="utf-8",
    )
    summary_path = workspace / "summary.json"
    cmd = [
        sys.executable,
        "-m",
        "thaw_cli",
        "run",
        "--config",
        "clinc.yaml",
        "--text-column",
        "text",
        "--label-column",
        "intent",
        "--id-column",
        "id",
        "--summary-json",
        str(summary_path),
    ]
    for split, path in files.items():
        cmd += [f"--{split}", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workspace, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return {"summary": json.loads(summary_path.read_text()), "wall_seconds": wall}


def _print(name: str, result: dict) -> None:
    s = result["summary"]
    gate = s["gate"]
    print(f"CLINC150 {name} ({s['curation']['splits']} rows after curation; scored by {gate['scored_by']['mode']})")
    print(
        f"    decision table: first move {gate['decision_table']['suggestion']}; "
        + "; ".join(gate["decision_table"]["reasons"])
    )
    for r in s["rungs"]:
        test = r.get("test") or {}
        mark = " (selected)" if r["selected"] else (" (not used for selection)" if test else "")
        test_acc = f"{test['accuracy']:.4f}{mark}" if test else "-"
        row(
            f"{r['rung']}: validation acc / macro-F1; test acc",
            f"{r['validation']['accuracy']:.4f} / {r['validation']['macro_f1']:.4f}; {test_acc}",
        )
    for d in gate["decisions"]:
        print(f"    gate after {d['after']}: {d['action']} - {d['reason']}")
    reg = s["registered_model"]
    row("registered", f"{reg['rung']} trained on {'+'.join(reg['trained_on'])}")
    row("selected test accuracy", f"{s['test']['metrics']['accuracy']:.4f}")
    row("ladder wall time", f"{gate['ladder_seconds'] / 60:.1f} min")
    row("whole run (curation to registration)", f"{result['wall_seconds'] / 60:.1f} min")


def run(workspace: Path, which: tuple[str, ...] = ("full", "10shot")) -> dict:
    if not CLINC.is_file():
        print(f"CLINC150 ladder: skipped ({CLINC} not found)")
        return {}
    out = {}
    for name in which:
        out[name] = run_one(workspace / name, None if name == "full" else int(name.removesuffix("shot")))
        _print(name, out[name])
    return out


if __name__ == "__main__":
    import tempfile

    run(Path(tempfile.mkdtemp(prefix="thaw-clinc-")) / "ws", tuple(sys.argv[1:]) or ("full", "10shot"))
