"""Curation: clean, deduplicate, scrub, split, and account for every row removed.

Order (each step counted in the report):
1. per input file: drop rows with empty text or label; truncate or reject long texts;
   resolve label conflicts; drop exact duplicates (normalised text);
2. scrub PII (Presidio) on what is left;
3. split the training pool (stratified, seeded) unless validation/test files are given;
4. near duplicates within each split, then evaluation first: test is fixed, validation
   loses rows that duplicate test, train loses rows that duplicate either;
5. write the split files atomically with the user's column names.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from tasks.dedup import (
    drop_positions,
    exact_duplicate_positions,
    minhash_signatures,
    near_duplicate_positions,
    normalize_text,
    resolve_label_conflicts,
)
from tasks.ingest import read_labelled_table
from thaw.config import SplitConfig, ThawConfig
from thaw.datasets import SPLITS, ColumnMap, file_md5, read_table, write_tables

log = logging.getLogger(__name__)

SAMPLES_PER_REASON = 5
CURATED_FORMAT = 2  # 2: canonical id/text/label columns (1 used the user's names)


@dataclass(frozen=True)
class CuratedDataset:
    """Where the curated splits and the curation report were written."""

    directory: Path
    files: dict[str, Path]
    report_path: Path
    rows: dict[str, int]
    labels: tuple[str, ...]
    metrics_path: Path
    cache_hit: bool = False


@dataclass
class CurationLedger:
    """Per-stage counts and (raw, to be scrubbed) samples of removed rows."""

    stages: list[dict] = field(default_factory=list)
    removed_samples: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    notes: dict = field(default_factory=dict)

    def record(
        self, stage: str, before: pd.DataFrame, removals: dict[str, list[int]], extra: dict | None = None
    ) -> None:
        removed = {reason: len(pos) for reason, pos in removals.items() if pos}
        for reason, positions in removals.items():
            room = SAMPLES_PER_REASON - len(self.removed_samples[reason])
            for pos in positions[: max(room, 0)]:
                self.removed_samples[reason].append((before["id"].iat[pos], before["text"].iat[pos]))
        dropped = {p for pos in removals.values() for p in pos}
        entry = {"stage": stage, "rows_in": len(before), "rows_out": len(before) - len(dropped), "removed": removed}
        self.stages.append(entry | (extra or {}))


def _apply(
    ledger: CurationLedger, stage: str, frame: pd.DataFrame, removals: dict[str, list[int]], extra: dict | None = None
) -> pd.DataFrame:
    ledger.record(stage, frame, removals, extra)
    return drop_positions(frame, sorted({p for pos in removals.values() for p in pos}))


def clean_rows(frame: pd.DataFrame, cfg: ThawConfig, ledger: CurationLedger, name: str) -> pd.DataFrame:
    """Drop empty text/label, bound text length, resolve conflicts, drop exact duplicates."""
    empty_text = [i for i, t in enumerate(frame["text"]) if not t.strip()]
    missing_label = [i for i, label in enumerate(frame["label"]) if not label.strip() and i not in set(empty_text)]
    frame = _apply(ledger, f"{name}:validity", frame, {"empty_text": empty_text, "missing_label": missing_label})
    limit = cfg.data.max_text_chars
    long_rows = [i for i, t in enumerate(frame["text"]) if len(t) > limit]
    if cfg.data.long_text_policy == "reject":
        frame = _apply(ledger, f"{name}:length", frame, {"too_long": long_rows})
    else:
        frame = frame.assign(text=[t[:limit] for t in frame["text"]])
        ledger.record(f"{name}:length", frame, {}, {"truncated": len(long_rows)})
    conflicts, n_conflicts = resolve_label_conflicts(frame, cfg.curation.dedup.label_conflicts)
    frame = _apply(
        ledger,
        f"{name}:label_conflicts",
        frame,
        {r.reason: list(r.positions) for r in conflicts},
        {"conflicting_texts": n_conflicts, "policy": cfg.curation.dedup.label_conflicts},
    )
    return _apply(
        ledger, f"{name}:exact_duplicates", frame, {"exact_duplicate": exact_duplicate_positions(frame["text"])}
    )


def stratified_split(frame: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Seeded per-class split; classes with fewer than 3 rows stay in train."""
    rng = random.Random(cfg.seed)
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    by_label: dict[str, list[int]] = defaultdict(list)
    for pos, label in enumerate(frame["label"]):
        by_label[label].append(pos)
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        n_test = round(len(rows) * cfg.test_fraction) if len(rows) >= 3 else 0
        n_val = round(len(rows) * cfg.validation_fraction) if len(rows) >= 3 else 0
        parts["test"] += rows[:n_test]
        parts["validation"] += rows[n_test : n_test + n_val]
        parts["train"] += rows[n_test + n_val :]
    return {s: frame.iloc[sorted(p)].reset_index(drop=True) for s, p in parts.items()}


def drop_cross_split_duplicates(
    splits: dict[str, pd.DataFrame], cfg: ThawConfig, ledger: CurationLedger, signer=minhash_signatures
) -> dict[str, pd.DataFrame]:
    """Near duplicates inside each split, then against the splits evaluated on.

    Each split's signatures are computed once and, for the rows kept, serve as the
    reference for the splits after it.
    """
    dcfg = cfg.curation.dedup
    out: dict[str, pd.DataFrame] = {}
    exact_ref: set[str] = set()
    reference = np.empty((0, dcfg.num_perm), dtype=np.uint32)
    for split in ("test", "validation", "train"):  # evaluation rows are fixed first
        frame = splits[split]
        exact = [i for i, t in enumerate(frame["text"]) if normalize_text(t) in exact_ref]
        frame = _apply(ledger, f"{split}:cross_split_exact", frame, {"exact_duplicate_of_eval": exact})
        if dcfg.near_duplicates:
            signatures = signer(list(frame["text"]), dcfg)
            own = near_duplicate_positions(signatures, dcfg)
            frame, signatures = (
                _apply(ledger, f"{split}:near_duplicates", frame, {"near_duplicate": own}),
                _without(signatures, own),
            )
            cross = near_duplicate_positions(signatures, dcfg, reference) if len(reference) else []
            frame, signatures = (
                _apply(ledger, f"{split}:cross_split_near", frame, {"near_duplicate_of_eval": cross}),
                _without(signatures, cross),
            )
            if split != "train":  # nothing is compared against train
                reference = np.concatenate([reference, signatures])
        out[split] = frame
        exact_ref.update(normalize_text(t) for t in frame["text"])
    return out


def _without(rows: np.ndarray, positions: list[int]) -> np.ndarray:
    if not positions:
        return rows
    keep = np.ones(len(rows), dtype=bool)
    keep[positions] = False
    return rows[keep]


def publish_accounting(report: dict, run_dir: Path) -> Path:
    """Flat per-stage counts as a metrics file (for ``dvc metrics diff``) and a Prefect table."""
    metrics = {
        "rows": report["splits"],
        "pii_rows_changed": report["pii"]["rows_changed"],
        "pii_entities": report["pii"]["entities"],
        "pii_rows_per_s": report["pii"]["rows_per_s"],
        "removed": {},
    }
    for stage in report["stages"]:
        for reason, n in stage["removed"].items():
            metrics["removed"][f"{stage['stage']}:{reason}"] = n
    path = run_dir / "curation_metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    try:
        from prefect.artifacts import create_table_artifact

        table = [
            {
                "stage": s["stage"],
                "rows_in": s["rows_in"],
                "rows_out": s["rows_out"],
                "removed": ", ".join(f"{k}={v}" for k, v in s["removed"].items()) or "-",
            }
            for s in report["stages"]
        ]
        create_table_artifact(
            key="curation-accounting", table=table, description="Rows in/out and removals per curation stage"
        )
    except Exception as exc:  # outside a flow run there is nowhere to attach it; the file still exists
        log.debug("no Prefect table artifact: %s", exc)
    return path


def _read_inputs(cfg: ThawConfig) -> dict[str, pd.DataFrame]:
    d = cfg.data
    given = {"train": d.train, "validation": d.validation, "test": d.test}
    return {name: read_labelled_table(path, d.columns) for name, path in given.items() if path is not None}


def curation_cache_key(cfg: ThawConfig, secret_fingerprint: str) -> str:
    """Content key of a curation: input bytes, the settings that shape the output, the
    pseudonymisation key's fingerprint, thaw's version and the curated file format."""
    import hashlib

    import thaw

    inputs = {
        name: file_md5(Path(p))
        for name, p in (("train", cfg.data.train), ("validation", cfg.data.validation), ("test", cfg.data.test))
        if p is not None
    }
    settings = {
        "data": cfg.data.model_dump(mode="json", exclude={"train", "validation", "test"}),
        "split": cfg.split.model_dump(mode="json"),
        "curation": cfg.curation.model_dump(mode="json"),
    }
    blob = json.dumps(
        {
            "inputs": inputs,
            "settings": settings,
            "secret": secret_fingerprint,
            "thaw": thaw.__version__,
            "format": CURATED_FORMAT,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _curate(
    cfg: ThawConfig, run_dir: Path, secret
) -> tuple[dict[str, Path], Path, Path, dict[str, int], tuple[str, ...]]:
    from tasks.pii import ScrubStats, build_analyzer, scrub_texts_parallel

    ledger = CurationLedger()
    frames = {name: clean_rows(frame, cfg, ledger, name) for name, frame in _read_inputs(cfg).items()}
    analyzer = build_analyzer(cfg.curation.pii)  # also scrubs the report's samples
    stats, started = ScrubStats(), time.perf_counter()
    for name, frame in frames.items():
        texts = list(frame["text"])
        if cfg.curation.executor == "dask":
            from tasks.scaleout import scrub_texts_on_dask

            scrubbed = scrub_texts_on_dask(texts, cfg.curation, secret, stats, run_dir / "dask" / name)
        else:
            scrubbed = list(scrub_texts_parallel(texts, analyzer, secret, cfg.curation.pii, stats))
        frames[name] = frame.assign(text=scrubbed)
    rows_per_s = stats.rows_seen / max(time.perf_counter() - started, 1e-9)
    if "validation" in frames and "test" in frames:
        splits = {s: frames[s] for s in SPLITS}
    else:
        splits = stratified_split(frames["train"], cfg.split)
        for given in ("validation", "test"):
            if given in frames:
                splits[given] = frames[given]
    signer = minhash_signatures
    if cfg.curation.executor == "dask":
        from tasks.scaleout import dask_signer

        signer = dask_signer(cfg.curation, run_dir / "dask" / "minhash")
    splits = drop_cross_split_duplicates(splits, cfg, ledger, signer)
    files = write_tables({s: splits[s] for s in SPLITS}, run_dir / "curated", cfg.data.output_format)
    report = build_report(ledger, stats, rows_per_s, secret, splits, analyzer, cfg)
    report_path = run_dir / "curation_report.json"
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    labels = tuple(sorted(set().union(*(set(f["label"]) for f in splits.values()))))
    return files, report_path, publish_accounting(report, run_dir), {s: len(f) for s, f in splits.items()}, labels


@task(name="curate-dataset")
def curate_dataset(cfg: ThawConfig, run_dir: Path) -> CuratedDataset:
    """Curate the configured inputs into train/validation/test files and a report.

    Content-addressed: unchanged inputs, settings and PII key reuse the cached result
    (and say so). Refuses (UserError) unreadable inputs; every row removed is counted.
    """
    import shutil

    from tasks.pii import load_pii_secret

    secret = load_pii_secret(cfg.curation.pii)
    cache = cfg.state_path / "cache" / "curation" / curation_cache_key(cfg, secret.fingerprint)
    if (cache / "done.json").is_file():
        log.info("curation cache hit (%s): inputs, settings and PII key unchanged, curation skipped", cache.name)
        shutil.copytree(cache, run_dir, dirs_exist_ok=True)
        meta = json.loads((cache / "done.json").read_text(encoding="utf-8"))
        files = {s: run_dir / "curated" / name for s, name in meta["files"].items()}
        return CuratedDataset(
            run_dir / "curated",
            files,
            run_dir / "curation_report.json",
            meta["rows"],
            tuple(meta["labels"]),
            run_dir / "curation_metrics.json",
            cache_hit=True,
        )
    files, report_path, metrics_path, rows, labels = _curate(cfg, run_dir, secret)
    staging = cache.with_name(cache.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "curated").mkdir(parents=True)
    for path in files.values():
        shutil.copyfile(path, staging / "curated" / path.name)
    for path in (report_path, metrics_path):
        shutil.copyfile(path, staging / path.name)
    (staging / "done.json").write_text(
        json.dumps({"files": {s: p.name for s, p in files.items()}, "rows": rows, "labels": list(labels)}),
        encoding="utf-8",
    )
    shutil.rmtree(cache, ignore_errors=True)
    staging.replace(cache)
    return CuratedDataset(run_dir / "curated", files, report_path, rows, labels, metrics_path)


def build_report(ledger, stats, rows_per_s, secret, splits, analyzer, cfg: ThawConfig) -> dict:
    """The accounting report; samples of removed rows are scrubbed before they are kept."""
    from tasks.pii import scrub_texts

    removed = []
    for reason, rows in sorted(ledger.removed_samples.items()):
        texts = list(scrub_texts([t for _, t in rows], analyzer, secret, cfg.curation.pii))
        removed += [{"reason": reason, "id": rid, "text": text} for (rid, _), text in zip(rows, texts, strict=True)]
    changed = [t for t in splits["train"]["text"] if "<" in t][:SAMPLES_PER_REASON]
    return {
        "stages": ledger.stages,
        "pii": {
            "entities": dict(stats.entities),
            "rows_changed": stats.rows_changed,
            "rows_seen": stats.rows_seen,
            "rows_per_s": round(rows_per_s, 1),
            "ner_rows": stats.ner_rows,
            "secret_source": secret.source.split(":")[0],
            "secret_fingerprint": secret.fingerprint,
            "entity_types": list(cfg.curation.pii.entities),
        },
        "dedup": cfg.curation.dedup.model_dump(mode="json"),
        "splits": {s: len(f) for s, f in splits.items()},
        "labels": dict(Counter(splits["train"]["label"])),
        "samples": {"removed": removed, "changed": changed},
    }


@task(name="publish-curated")
def publish_curated(curated: CuratedDataset, work: Path, output: Path, columns: ColumnMap) -> dict[str, Path]:
    """Write the splits to ``output`` with the user's column names; copy the report,
    metrics and Data Docs from ``work``."""
    import shutil

    output.mkdir(parents=True, exist_ok=True)
    frames = {s: read_table(p).rename(columns=columns.to_user()) for s, p in curated.files.items()}
    fmt = next(iter(curated.files.values())).suffix.lstrip(".")
    written = write_tables(frames, output, fmt)
    for name, path in (("report", curated.report_path), ("metrics", curated.metrics_path)):
        written[name] = output / path.name
        shutil.copyfile(path, written[name])
    if (work / "data_docs").is_dir():
        shutil.copytree(work / "data_docs", output / "data_docs", dirs_exist_ok=True)
        written["data_docs"] = output / "data_docs"
    return written
