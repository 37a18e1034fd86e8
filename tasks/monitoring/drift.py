"""Drift monitoring I/O: the champion's own training data restored through its lineage,
newly arrived text read and PII-scrubbed like training data, the tests of
:mod:`thaw.drift` run on the champion's frozen-backbone features, a report written, and
retraining triggered on the combined data when the data has moved."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import (
    ID,
    LABEL,
    TEXT,
    ColumnMap,
    file_md5,
    read_split,
    read_table,
    write_table,
    write_text_atomically,
)
from thaw.drift import DriftAssessment, assess_drift
from thaw.errors import UserError
from thaw.modeling import BackboneRef
from thaw.shown import named_rows
from thaw.text_form import cut_scrubbed, model_text, normalise_pseudonyms

log = logging.getLogger(__name__)
ROW = "_row"  # an arrival's data row number in its file, for the rows a message names


@dataclass(frozen=True)
class Reference:
    """The model version watched and its curated splits, restored and md5-checked."""

    name: str
    version: str
    splits: dict[str, Path]
    md5: dict[str, str]
    backbone: BackboneRef
    approved_accuracy: float | None
    trained_on: tuple[str, ...]


@dataclass(frozen=True)
class Arrivals:
    """Newly arrived rows, PII-scrubbed, as a canonical table (id, text, label)."""

    source: Path
    source_md5: str
    scrubbed: Path
    rows: int
    duplicates_dropped: int
    labelled: bool
    long_texts: int = 0  # texts over data.max_text_chars: cut to it, or left out under long_text_policy: reject
    long_text_rule: str = ""


@dataclass(frozen=True)
class DriftOutcome:
    drifted: bool
    fired: tuple[str, ...]
    report_json: Path
    report_md: Path
    figure: Path


@dataclass(frozen=True)
class Retraining:
    combined: Path
    rows: int
    flow_run_id: str | None
    deployment: str | None


@task(name="restore-reference")
def restore_reference(cfg: ThawConfig, ref: str) -> Reference:
    """Resolve ``ref`` and bring back exactly the data it learned from (DVC remote, by md5).
    ``@champion`` and ``@challenger`` are followed only where the ledger puts them: drift
    is measured against what thaw serves, not where an alias was moved by hand."""
    from tasks.release.ledger import resolve_backed_version
    from tasks.release.stored_model import allowed_backbone_sources
    from tasks.tracking.client import client_for
    from tasks.versioning.restore import restore_data

    mv = resolve_backed_version(cfg, ref, "thaw monitor")
    tags = mv.tags
    backbone = BackboneRef(tags["thaw.backbone.name"], tags["thaw.backbone.source"], tags["thaw.backbone.revision"])
    if backbone.source not in allowed_backbone_sources(cfg):  # a tag anyone with registry access may edit
        raise UserError(
            f"{mv.name} version {mv.version}: its tag thaw.backbone.source {backbone.source[:200]!r} is not a backbone "
            "this configuration allows (thaw's packaged backbones and backbone.path)"
        )
    accuracy = approved_accuracy(client_for(cfg), mv)
    dest = cfg.state_path / "monitor" / "reference" / f"{mv.name}-v{mv.version}"
    splits = restore_data(cfg, f"{mv.name}/{mv.version}", dest)  # by version: the alias may move meanwhile
    md5 = {split: tags[f"thaw.curated.{split}.md5"] for split in splits}
    return Reference(
        name=mv.name,
        version=str(mv.version),
        splits=splits,
        md5=md5,
        backbone=backbone,
        approved_accuracy=accuracy,
        trained_on=tuple(tags.get("thaw.transfer.trained_on", "train").split("+")),
    )


def recorded_accuracy(name: str, version: str, value: str | None) -> float | None:
    """The ``thaw.test_accuracy`` tag as the accuracy the labelled alarm compares with;
    refused unless it is a number in [0, 1] (a tag anyone with edit rights may rewrite)."""
    import math

    if not value:
        return None
    try:
        accuracy = float(value)
    except ValueError:
        accuracy = math.nan
    if not 0.0 <= accuracy <= 1.0:  # also refuses nan
        raise UserError(f"{name} version {version}: its tag thaw.test_accuracy {value[:40]!r} is not an accuracy")
    return accuracy


def approved_accuracy(client, mv) -> float | None:
    """The test accuracy version ``mv`` was registered with: its ``thaw.test_accuracy``
    tag, refused (UserError) when it differs from the ``test_accuracy`` its run logged, or
    when the run logged that metric with more than one value. MLflow appends to a metric's
    history and never rewrites it, while the tag can be edited: set to 0 it would silence
    the labelled alarm. The tag alone for a version whose run logged none."""
    from tasks.tracking.client import run_of
    from tasks.tracking.run_record import logged_values

    accuracy = recorded_accuracy(mv.name, str(mv.version), mv.tags.get("thaw.test_accuracy"))
    run = run_of(client, mv.run_id)
    logged = logged_values(client, run.info.run_id, "test_accuracy") if run is not None else []
    if not logged:
        return accuracy
    if len(logged) > 1:  # logged again, perhaps with an earlier timestamp: which one was approved is unknown
        raise UserError(
            f"{mv.name} version {mv.version}: its run logged test_accuracy with {len(logged)} values "
            f"({', '.join(logged[:3])}): the record was added to"
        )
    shown = "nothing" if accuracy is None else f"{accuracy:.4f}"
    if shown != logged[0]:  # registration writes the tag with 4 decimals
        raise UserError(
            f"{mv.name} version {mv.version}: its tag thaw.test_accuracy reads {shown}, but its run logged "
            f"{logged[0]}: the tag was edited"
        )
    return accuracy


@task(name="read-arrivals")
def read_arrivals(cfg: ThawConfig, source: Path, columns: ColumnMap, run_dir: Path) -> Arrivals:
    """Read the new rows (labelled or not), scrub PII with the curation settings, hold
    them to the length the training rows were held to (``data.max_text_chars``, as
    ``data.long_text_policy`` says), drop exact repeats of a text, and keep them as
    ``run_dir/arrivals.csv``."""
    from thaw.ingest import read_labelled_table
    from thaw.pii.detector import PiiDetector, ScrubStats, load_pii_secret, protect_ids, scrub_texts_parallel

    frame = read_labelled_table(source, columns)
    labelled = columns.label is not None
    if labelled:
        empty = frame.index[frame[LABEL].str.strip() == ""]
        if len(empty):
            raise UserError(
                f"{source}: row {int(empty[0]) + 1} has an empty {columns.label!r}: label every row or leave "
                "--label-column out"
            )
    frame = frame.assign(**{ROW: range(1, len(frame) + 1)})  # each row's data row number in the file
    frame = _apply_script_policy(source, frame, columns, cfg)
    frame, too_long = _refuse_long_texts(source, frame, columns, cfg)
    detector, secret = PiiDetector(cfg.curation.pii), load_pii_secret(cfg.curation.pii)
    scrubbed_texts = list(scrub_texts_parallel(frame[TEXT].tolist(), detector, secret, ScrubStats()))
    frame[TEXT], cut = _cut_long_texts(source, scrubbed_texts, frame[ROW].tolist(), columns, cfg)
    frame[ID] = protect_ids(frame[ID].tolist(), detector, secret, cfg.curation.pii.ids)[0]  # as curation does
    _refuse_residual_pii(source, frame[TEXT].tolist(), frame[ROW].tolist(), cfg)
    key = frame[TEXT].map(lambda t: " ".join(normalise_pseudonyms(t).casefold().split()))
    kept = frame[~key.duplicated()]
    scrubbed = write_table(kept[[ID, TEXT, LABEL, ROW]], run_dir / "arrivals.csv")
    limit = cfg.data.max_text_chars
    reject = cfg.data.long_text_policy == "reject"
    rule = f"left out (longer than {limit} characters)" if reject else f"cut to {limit} characters"
    return Arrivals(
        source, file_md5(source), scrubbed, len(kept), len(frame) - len(kept), labelled, too_long + cut, rule
    )


def _refuse_long_texts(
    source: Path, frame: pd.DataFrame, columns: ColumnMap, cfg: ThawConfig
) -> tuple[pd.DataFrame, int]:
    """Under ``long_text_policy: reject`` curation refused texts over ``max_text_chars``,
    so the champion never saw one: such arrivals are left out of the comparison too."""
    if cfg.data.long_text_policy != "reject":
        return frame, 0
    long_rows = [i for i, t in enumerate(frame[TEXT]) if len(t) > cfg.data.max_text_chars]
    if long_rows:
        _say_long(source, columns, [int(frame[ROW].iat[i]) for i in long_rows], "left out: longer than", cfg)
    return frame.drop(frame.index[long_rows]).reset_index(drop=True), len(long_rows)


def _cut_long_texts(
    source: Path, texts: list[str], rows: list[int], columns: ColumnMap, cfg: ThawConfig
) -> tuple[list[str], int]:
    """Under ``long_text_policy: truncate`` curation cut each scrubbed text to
    ``max_text_chars``: the training rows hold no word past it, so an arrival compared
    whole would bring words they were never given the chance to have (a mail's tail, read
    as unseen vocabulary)."""
    limit = cfg.data.max_text_chars
    long_rows = [row for row, t in zip(rows, texts, strict=True) if len(t) > limit]
    if long_rows:
        _say_long(source, columns, long_rows, "cut to", cfg)
    return [cut_scrubbed(t, limit) for t in texts], len(long_rows)


def _say_long(source: Path, columns: ColumnMap, rows: list[int], done: str, cfg: ThawConfig) -> None:
    """Name the data rows (numbered as in the file) held to the training rows' length."""
    shown = named_rows(rows)
    log.warning(
        "%s: column %r, rows %s: %s %d characters, as the training rows were (data.max_text_chars, "
        "data.long_text_policy: %s)", source, columns.text, shown, done, cfg.data.max_text_chars,
        cfg.data.long_text_policy,
    )  # fmt: skip


def _apply_script_policy(source: Path, frame: pd.DataFrame, columns: ColumnMap, cfg: ThawConfig) -> pd.DataFrame:
    """Curation's policy for rows in scripts the PII detector does not cover, on arrivals."""
    from thaw.pii.scripts import refusal, uncovered_rows

    pii = cfg.curation.pii
    rows, scripts = uncovered_rows(frame[TEXT].tolist(), pii.covered_scripts)
    if not rows:
        return frame
    if pii.uncovered_scripts == "refuse":
        raise UserError(refusal(source, columns.text, rows, scripts, pii.covered_scripts))
    log.warning("%s: %s %d rows with letters the PII detector does not cover (%s)", source,
                "dropped" if pii.uncovered_scripts == "drop" else "kept", len(rows), dict(scripts))  # fmt: skip
    return frame.drop(frame.index[rows]).reset_index(drop=True) if pii.uncovered_scripts == "drop" else frame


def _refuse_residual_pii(source: Path, texts: list[str], rows: list[int], cfg: ThawConfig) -> None:
    """The residual-PII check curation's expectations run, on the scrubbed arrivals: rows
    still holding structured PII stop the run (named by their data row number in the
    file, never shown)."""
    from tasks.curation.expectations import residual_pii_kinds

    entities = cfg.curation.pii.entities
    left = [(row, kinds) for row, t in zip(rows, texts, strict=True) if (kinds := residual_pii_kinds(t, entities))]
    if left:
        kinds = ", ".join(sorted({k for _, ks in left for k in ks.split(",")}))
        raise UserError(
            f"{source}: {len(left)} rows still hold PII after scrubbing ({kinds}; rows "
            f"{named_rows(row for row, _ in left)}); nothing was assessed or kept"
        )


def monitor_run_dir(cfg: ThawConfig) -> Path:
    """A fresh directory for one monitor run's files."""
    import datetime
    import uuid

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = cfg.state_path / "monitor" / "runs" / f"{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


def _sample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=cap, replace=False)) if n > cap else np.arange(n)


def _embed(cfg: ThawConfig, backbone: BackboneRef, texts: list[str]) -> np.ndarray:
    from thaw.modeling import configure_threads, embed_texts, load_encoder, locate_backbone, select_device

    configure_threads()
    device = select_device()
    tokenizer, model = load_encoder(locate_backbone(backbone), device)
    return embed_texts([model_text(t) for t in texts], tokenizer, model, cfg.backbone, device)


@task(name="assess-drift")
def assess_arrivals(cfg: ThawConfig, reference: Reference, arrivals: Arrivals, run_dir: Path) -> DriftOutcome:
    """Compare the arrivals with the rows the champion trained on; write the report."""
    m = cfg.monitoring
    rng = np.random.default_rng(m.seed)
    trained = [read_split(reference.splits[s]) for s in reference.trained_on if s in reference.splits]
    ref_texts = [t for s in trained for t in s.texts]
    ref_labels = [label for s in trained for label in s.labels]
    heldout = read_split(reference.splits["test"])
    new = read_split(arrivals.scrubbed)
    if not new.texts:
        raise UserError(f"{arrivals.source}: no rows to compare")
    ref_idx = _sample(len(ref_texts), m.max_reference_rows, rng)
    new_idx = _sample(len(new.texts), m.max_new_rows, rng)
    ref_sample = [ref_texts[i] for i in ref_idx]
    new_sample = [new.texts[i] for i in new_idx]
    features = _embed(cfg, reference.backbone, ref_sample + new_sample)
    labels_new = [new.labels[i] for i in new_idx] if arrivals.labelled else None
    correct = None
    if labels_new is not None:
        from tasks.release.stored_model import load_verified_model

        model = load_verified_model(cfg, reference.name, reference.version)
        predicted = model.predict(list(new_sample))["label"].astype(str).tolist()
        correct = [p == t for p, t in zip(predicted, labels_new, strict=True)]
    result = assess_drift(
        m,
        features[: len(ref_sample)],
        features[len(ref_sample) :],
        ref_texts,
        heldout.texts,
        new_sample,
        rng,
        reference_labels=[ref_labels[i] for i in ref_idx] if labels_new is not None else None,
        new_labels=labels_new,
        new_correct=correct,
        approved_accuracy=reference.approved_accuracy if labels_new is not None else None,
        trained_labels=ref_labels if labels_new is not None else None,
        arrival_labels=new.labels if labels_new is not None else None,
    )
    return write_drift_report(reference, arrivals, result, features, len(ref_sample), run_dir)


def _long_text_note(arrivals: dict) -> str:
    """The texts held to the training rows' length, for the report's first line."""
    n = arrivals.get("long_texts", 0)
    return f"; {n} texts {arrivals['long_text_rule']}, as in training" if n else ""


def _report_dict(reference: Reference, arrivals: Arrivals, a: DriftAssessment) -> dict:
    return {
        "model": {"name": reference.name, "version": reference.version, "trained_on": list(reference.trained_on)},
        "reference_md5": reference.md5,
        "arrivals": {
            "file": str(arrivals.source),
            "md5": arrivals.source_md5,
            "rows_after_dedup": arrivals.rows,
            "exact_repeats_dropped": arrivals.duplicates_dropped,
            "long_texts": arrivals.long_texts,
            "long_text_rule": arrivals.long_text_rule,
            "labelled": arrivals.labelled,
        },
        "false_alarm_rate": a.alpha,
        "per_test_alpha": a.family_alpha,
        "rows_compared": {"reference": a.rows_reference, "new": a.rows_new},
        "text_distribution": asdict(a.text),
        "unseen_vocabulary": {
            "new": a.unseen_vocab_new,
            "heldout_baseline": a.unseen_vocab_baseline,
            "margin": a.unseen_vocab_margin,
            "p_value": a.unseen_vocab_p,
        },
        "label_shift": None
        if a.label_shift_p is None
        else {
            "chi_square_p": a.label_shift_p,
            "unknown_labels": a.unknown_labels,
            "known_label_rows": a.known_label_rows,
        },
        "within_classes": {"p_value": a.per_class_p, "classes": {c: asdict(t) for c, t in a.per_class.items()}},
        "accuracy": None
        if a.accuracy is None
        else {"new": a.accuracy, "interval": list(a.accuracy_interval or ()), "approved": a.approved_accuracy},
        "drifted": a.drifted,
        "fired": a.fired,
    }


def _markdown(report: dict) -> str:
    """The report as Markdown (a Prefect artifact, ``drift.md``); the arrivals' file name,
    its unknown labels in the table and the lines of what fired (which quote labels) are
    someone's data: placed as code and escaped text (a "|" in a label would otherwise end
    the table's cell, a "[x](y)" would be a link)."""
    from thaw.shown import md_code, md_text

    m, arr = report["model"], report["arrivals"]
    verdict = "**Drift detected**" if report["drifted"] else "**No drift detected**"
    lines = [
        f"# Drift report: {m['name']} v{m['version']}",
        "",
        f"{verdict} in {md_code(arr['file'], 500)} ({arr['rows_after_dedup']} rows compared after dropping "
        f"{arr['exact_repeats_dropped']} exact repeats{_long_text_note(arr)}; md5 `{arr['md5']}`) against the rows "
        f"v{m['version']} trained on ({'+'.join(m['trained_on'])}).",
        "",
        f"False-alarm rate {report['false_alarm_rate']:.3g}: each of the four tests runs at "
        f"{report['per_test_alpha']:.3g}.",
        "",
        "| check | figure | threshold |",
        "|---|---|---|",
        f"| text distribution (MMD, permutation p) | p = {report['text_distribution']['p_value']:.4f} | "
        f"< {report['per_test_alpha']:.4f} |",
        f"| unseen vocabulary | {report['unseen_vocabulary']['new']:.1%} (held-out split: "
        f"{report['unseen_vocabulary']['heldout_baseline']:.1%}; permutation p = "
        f"{report['unseen_vocabulary']['p_value']:.4f}) | > held-out + "
        f"{report['unseen_vocabulary']['margin']:.0%}, and p < {report['per_test_alpha']:.4f} |",
    ]
    if report["label_shift"] is not None:
        unknown = md_text(", ".join(report["label_shift"]["unknown_labels"]), 500) or "none"
        lines.append(
            f"| label shift (chi-square, permutation p; all {report['label_shift']['known_label_rows']} training rows' "
            f"labels against every arrival's) | p = {report['label_shift']['chi_square_p']:.4f}; "
            f"new labels: {unknown} | "
            f"< {report['per_test_alpha']:.4f}, or any new label |"
        )
        within = report["within_classes"]
        figure = (
            f"p = {within['p_value']:.4f} over {len(within['classes'])} classes" if within["classes"] else "no class"
        )
        lines.append(f"| text within classes (stratified permutation) | {figure} | < {report['per_test_alpha']:.4f} |")
    if report["accuracy"] is not None:
        acc = report["accuracy"]
        lines.append(
            f"| accuracy on the new rows | {acc['new']:.3f} [{acc['interval'][0]:.3f}, {acc['interval'][1]:.3f}] | "
            f"interval below approved {acc['approved']} |"
        )
    lines += ["", "Fired:" if report["fired"] else "Nothing fired."]
    lines += [f"- {md_text(f, 1000)}" for f in report["fired"]]  # they quote labels: data
    return "\n".join(lines) + "\n"


def _figure(a: DriftAssessment, features: np.ndarray, n_ref: int, path: Path) -> Path:
    from thaw.plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    left.scatter(xy[:n_ref, 0], xy[:n_ref, 1], s=6, alpha=0.4, label=f"trained on ({n_ref})")
    left.scatter(xy[n_ref:, 0], xy[n_ref:, 1], s=6, alpha=0.6, label=f"new ({len(features) - n_ref})")
    left.set_title("frozen-backbone features, first two principal axes")
    left.legend(loc="best", fontsize=8)
    names = ["text (MMD)"] + (["label shift"] if a.label_shift_p is not None else [])
    values = [a.text.p_value] + ([a.label_shift_p] if a.label_shift_p is not None else [])
    if a.per_class_p is not None:
        names.append(f"within {len(a.per_class)} classes")
        values.append(a.per_class_p)
        shown = sorted(a.per_class, key=lambda c: a.per_class[c].p_value)[:10]  # descriptive: the most moved
        names += [f"  class {c} (own p)" for c in shown]
        values += [a.per_class[c].p_value for c in shown]
    right.barh(range(len(values)), [max(v, 1e-6) for v in values], color="tab:gray")
    right.set_yticks(range(len(values)), names, fontsize=7)
    right.set_xscale("log")
    right.axvline(a.family_alpha, color="tab:red", label=f"alpha/4 = {a.family_alpha:.4f}")
    right.set_title("p-values (left of the line: drift)")
    right.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def write_drift_report(
    reference: Reference, arrivals: Arrivals, a: DriftAssessment, features: np.ndarray, n_ref: int, run_dir: Path
) -> DriftOutcome:
    report = _report_dict(reference, arrivals, a)
    json_path = write_text_atomically(run_dir / "drift.json", json.dumps(report, indent=2, sort_keys=True))
    md_path = write_text_atomically(run_dir / "drift.md", _markdown(report))
    figure = _figure(a, features, n_ref, run_dir / "drift.png")
    return DriftOutcome(a.drifted, tuple(a.fired), json_path, md_path, figure)


@task(name="trigger-retraining")
def trigger_retraining(
    cfg: ThawConfig, reference: Reference, arrivals: Arrivals, deployment: str | None
) -> Retraining | None:
    """Write the champion's curated rows plus the new labelled rows as one training file
    (column names from the config) and, given a deployment, start a training run on it.

    The file goes to the state directory, not ``data/``: the run that trains on it imports
    it under its digest like any input, so ``data.dvc`` versions it with that run only,
    not with every later run."""
    if not arrivals.labelled:
        log.warning("drift detected in unlabelled rows: label them to retrain on them")
        return None
    old = pd.concat([read_table(p) for p in reference.splits.values()])
    new = read_table(arrivals.scrubbed)
    used = set(old[ID])
    clash = [row for row, row_id in zip(new[ROW], new[ID], strict=True) if row_id in used]  # rows: an id may be PII
    if clash:
        raise UserError(
            f"{arrivals.source}: {len(clash)} rows have ids already used by {reference.name} v{reference.version}'s "
            f"data (rows {named_rows(clash)}): give the new rows their own ids"
        )
    columns = ColumnMap(cfg.data.text_column, cfg.data.label_column, cfg.data.id_column)
    combined = pd.concat([old[[ID, TEXT, LABEL]], new[[ID, TEXT, LABEL]]], ignore_index=True)
    target = cfg.state_path / "retrain" / f"{reference.name}-v{reference.version}+{arrivals.source_md5[:12]}.csv"
    write_table(combined.rename(columns=columns.to_user()), target)
    flow_run_id = None
    if deployment:
        from prefect.deployments import run_deployment

        data = cfg.data.model_copy(
            update={"train": target, "validation": None, "test": None, "id_column": columns.id_name}
        )
        params = {"cfg": cfg.model_copy(update={"data": data}).model_dump(mode="json")}
        flow_run = run_deployment(deployment, parameters=params, timeout=0)
        flow_run_id = str(flow_run.id)
        log.info("retraining started: %s flow run %s on %s", deployment, flow_run_id, target)
    return Retraining(target, len(combined), flow_run_id, deployment)


@task(name="publish-drift-report")
def publish_drift_report(
    cfg: ThawConfig, reference: Reference, arrivals: Arrivals, outcome: DriftOutcome, retraining: Retraining | None
) -> str:
    """An MLflow run in ``<experiment>-monitor`` with the figures and files, and the
    markdown as a Prefect artifact when running under a flow run; returns the run id."""
    from prefect.runtime import flow_run

    from tasks.tracking.client import client_for, ensure_experiment, log_files

    report = json.loads(outcome.report_json.read_text(encoding="utf-8"))
    if retraining is not None:
        report["retraining"] = {
            "file": str(retraining.combined),
            "rows": retraining.rows,
            "deployment": retraining.deployment,
            "flow_run_id": retraining.flow_run_id,
        }
        write_text_atomically(outcome.report_json, json.dumps(report, indent=2, sort_keys=True))
        started = (
            f"training run `{retraining.flow_run_id}` of `{retraining.deployment}` started on it"
            if retraining.flow_run_id
            else "no training deployment given: retrain with `thaw run --train` on it"
        )
        note = f"\nRetraining: {retraining.rows} rows written to `{retraining.combined}`; {started}.\n"
        write_text_atomically(outcome.report_md, outcome.report_md.read_text(encoding="utf-8") + note)
    elif outcome.drifted and not arrivals.labelled:
        note = "\nNo retraining: the new rows carry no labels. Label them and run the monitor again.\n"
        write_text_atomically(outcome.report_md, outcome.report_md.read_text(encoding="utf-8") + note)
    client = client_for(cfg)
    experiment = ensure_experiment(client, cfg, f"{cfg.tracking.experiment}-monitor")
    tags = {
        "thaw.monitor.model": reference.name,
        "thaw.monitor.version": reference.version,
        "thaw.monitor.arrivals_md5": arrivals.source_md5,
        "thaw.monitor.drifted": str(outcome.drifted).lower(),
        "thaw.prefect_flow_run_id": str(flow_run.get_id() or "local"),
        "mlflow.note.content": outcome.report_md.read_text(encoding="utf-8"),
    }
    if retraining is not None:
        tags["thaw.monitor.retrain_file"] = str(retraining.combined)
        tags["thaw.monitor.retrain_flow_run_id"] = retraining.flow_run_id or ""
    run = client.create_run(experiment, tags=tags, run_name=f"drift-{reference.name}-v{reference.version}")
    metrics = {
        "text_mmd2": report["text_distribution"]["mmd2"],
        "text_p_value": report["text_distribution"]["p_value"],
        "unseen_vocab_new": report["unseen_vocabulary"]["new"],
        "unseen_vocab_heldout": report["unseen_vocabulary"]["heldout_baseline"],
        "unseen_vocab_p_value": report["unseen_vocabulary"]["p_value"],
        "rows_new": report["rows_compared"]["new"],
        "drifted": float(outcome.drifted),
    }
    if report["label_shift"] is not None:
        metrics["label_shift_p_value"] = report["label_shift"]["chi_square_p"]
    if report["accuracy"] is not None:
        metrics["accuracy_new"] = report["accuracy"]["new"]
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, float(value))
    log_files(client, run.info.run_id, [outcome.report_json, outcome.report_md, outcome.figure])
    client.set_terminated(run.info.run_id, "FINISHED")
    if flow_run.get_id():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            markdown=outcome.report_md.read_text(encoding="utf-8"),
            key=f"drift-{reference.name}".lower().replace("_", "-").replace(".", "-"),
            description=f"drift of {reference.name} v{reference.version}",
        )
    return run.info.run_id
