"""Great Expectations gates on the curated splits, plus the residual-PII check.

The residual-PII check is independent of Presidio and of which recognizers run: PII by
shape (``thaw.pii.shapes``) and the structured rules, with their validators (Luhn for
card numbers, mod-97 for IBANs), on the text's detection view, so a recognizer's miss
fails the run instead of reaching training. GX is imported only when validating.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import regex
from prefect import task

from tasks.curation.dedup import normalize_text
from thaw import artifacts
from thaw.config import TRAIN_ROWS_KEPT, ThawConfig
from thaw.datasets import ID, LABEL, SLICE, TEXT, read_table
from thaw.errors import ExpectationsFailed
from thaw.pii.rules import structured_spans
from thaw.pii.shapes import shape_spans, without_placeholders
from thaw.pii.view import detection_view

MAX_EXAMPLES = 3
KEYED_ID = regex.compile(r"id-[0-9a-f]{16}")  # thaw.pii.detector.keyed_id
# The residual check's names for what it looks for, by the entity the scrubber replaces.
RESIDUAL_KINDS = {
    "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "PHONE_NUMBER": "PHONE",
    "LONG_NUMBER": "NUMBER",
    "URL": "URL_CREDENTIALS",
}


def residual_pii_spans(text: str, entities: Iterable[str] = tuple(RESIDUAL_KINDS)) -> list[tuple[int, int, str]]:
    """(start, end, kind) of PII still in ``text``, for the ``entities`` that are scrubbed,
    read through the detection view (so typography hides nothing): the shapes no text
    may keep (``thaw.pii.shapes``: cards with any separators, 9+ digit runs, e-mail
    shapes, international phone numbers, URLs with credentials) and checksummed IBANs.
    Context-free by design: a placeholder next to a number never turns it into PII."""
    wanted = {RESIDUAL_KINDS[e] for e in entities if e in RESIDUAL_KINDS}
    view = detection_view(text)
    words = without_placeholders(view.text, fill="x")  # a placeholder reads as the word it replaced
    ibans = [s for s in structured_spans(words) if s.entity == "IBAN_CODE"]
    found = view.spans_to_original(ibans + shape_spans(view.text))
    kept: list[tuple[int, int, str]] = []
    for start, end, entity in sorted(found, key=lambda s: (s.start, -s.end)):
        kind = RESIDUAL_KINDS.get(entity)
        if kind in wanted and (not kept or start >= kept[-1][1]):  # one value, found twice, kept once
            kept.append((start, end, kind))
    return kept


def residual_pii_kinds(text: str, entities: Iterable[str] = tuple(RESIDUAL_KINDS)) -> str:
    """Comma-joined kinds of residual PII in ``text``; '' when clean."""
    return ",".join(sorted({kind for _, _, kind in residual_pii_spans(text, entities)}))


def mask_residual_pii(text: str) -> str:
    """``text`` with residual PII replaced by ``[KIND?]``, safe for an error message."""
    for start, end, kind in reversed(residual_pii_spans(text)):
        text = text[:start] + f"[{kind}?]" + text[end:]
    return text


@dataclass(frozen=True)
class ExpectationsReport:
    """Outcome of the suite: the JSON summary, its markdown twin and the Data Docs."""

    success: bool
    summary_path: Path
    data_docs_dir: Path
    markdown_path: Path

    @property
    def reports(self) -> tuple[Path, ...]:
        """The files a reader opens: the summary, its markdown twin and the Data Docs."""
        return (self.summary_path, self.markdown_path, self.data_docs_dir)


def _check_record(split: str, result) -> dict:
    """One expectation and its outcome, for ``expectations.json``: its arguments and the
    counts it observed, never row values (they may hold what the check was looking for)."""
    config = result.expectation_config
    res = result.result or {}
    observed = res.get("observed_value")
    record = {
        "split": split,
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "arguments": {
            k: v
            for k, v in config.kwargs.items()
            if k not in ("column", "batch_id") and isinstance(v, (int, float, str, bool, list)) and len(str(v)) < 300
        },
        "success": bool(result.success),
    }
    if isinstance(observed, (int, float, str)) and len(str(observed)) < 100:
        record["observed"] = observed
    if "unexpected_count" in res:
        record["unexpected_count"] = int(res["unexpected_count"] or 0)
        record["element_count"] = int(res.get("element_count") or 0)
    return record


def checks_markdown(success: bool, checks: list[dict], failures: list[str]) -> str:
    """The data checks as a self-contained markdown report: readable offline and in the
    MLflow UI (GX's Data Docs load their scripts and styles from CDNs). The failures and
    the cells quote the data's labels: shown as text (``md_text``), never as markup."""
    from thaw.shown import md_text

    lines = [
        "# Data checks (Great Expectations)",
        "",
        f"**{'All passed' if success else 'FAILED: training did not start'}**: "
        f"{sum(c['success'] for c in checks)} of {len(checks)} expectations met on the curated splits.",
        "",
    ]
    if failures:
        lines += ["## Failures", "", *[f"- {md_text(f, 2000)}" for f in failures], ""]
    lines += ["| split | expectation | column | arguments | result | observed |", "|---|---|---|---|---|---|"]
    for c in checks:
        args = ", ".join(f"{k}={v}" for k, v in c["arguments"].items())
        if "unexpected_count" in c:
            seen = f"{c['unexpected_count']} of {c['element_count']} rows unexpected"
        else:
            seen = str(c.get("observed", ""))
        cells = [md_text(x, 10_000) for x in (c["split"], c["expectation"], c["column"] or "", args)]
        cells += ["pass" if c["success"] else "**FAIL**", md_text(seen, 10_000)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def carried_residual_pii(row: pd.Series, columns: Iterable[str], entities: tuple[str, ...]) -> str:
    """The residual-PII kinds in every carried column of a row, each named by its column
    after the text's ("EMAIL", "id:PHONE"); '' when all are clean."""
    found = [_column_kinds(column, str(row[column]), entities) for column in columns if column in row.index]
    return ";".join(k for k in found if k)


def _column_kinds(column: str, value: str, entities: tuple[str, ...]) -> str:
    if column == ID and KEYED_ID.fullmatch(value):  # thaw's keyed digest of an id
        return ""
    kinds = residual_pii_kinds(value, entities)
    return kinds if not kinds or column == TEXT else f"{column}:{kinds}"


def _with_checks(frame: pd.DataFrame, text_col: str, entities: Iterable[str]) -> pd.DataFrame:
    """The frame with its check columns; the residual check column by column (a label or
    slice repeats: each distinct value is checked once), joined per row."""
    entities, carried = tuple(entities), [c for c in (text_col, ID, LABEL, SLICE) if c in frame.columns]
    per_column = []
    for column in carried:
        values = frame[column].astype(str)
        kinds = {v: _column_kinds(column, v, entities) for v in values.unique()}
        per_column.append(values.map(kinds))
    joined = [";".join(k for k in row if k) for row in zip(*per_column, strict=True)] if per_column else []
    return frame.assign(_normalized_text=frame[text_col].map(normalize_text), _residual_pii=joined)


SEEN_IN_TRAINING = {"thaw": "labels seen in training"}


def _suite(
    cfg: ThawConfig,
    split: str,
    columns: list[str],
    text_col: str,
    label_col: str,
    id_col: str,
    training_labels: list[str] | None = None,
):
    """The suite of one split; ``training_labels`` (for validation and test): the labels
    the training split has, the only ones a model trained on it can answer."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    e = cfg.curation.expectations
    suite = gx.ExpectationSuite(name=f"thaw-{split}")
    suite.add_expectation(
        gxe.ExpectTableColumnsToMatchSet(column_set=columns + ["_normalized_text", "_residual_pii"], exact_match=True)
    )
    min_rows = e.min_rows if split == "train" else 1
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=e.max_rows))
    for col in (text_col, label_col, id_col):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=text_col, min_value=e.min_text_chars, max_value=cfg.data.max_text_chars
        )
    )
    suite.add_expectation(gxe.ExpectColumnValueLengthsToBeBetween(column=label_col, min_value=1))
    if e.allowed_labels:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=label_col, value_set=list(e.allowed_labels)))
    if training_labels is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(column=label_col, value_set=training_labels, meta=SEEN_IN_TRAINING)
        )
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=id_col))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="_normalized_text"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="_residual_pii", value_set=[""]))
    return suite


def _class_count_suite(cfg: ThawConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="thaw-class-counts")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=2))  # a classifier needs two classes
    suite.add_expectation(
        gxe.ExpectColumnMinToBeBetween(column="examples", min_value=cfg.curation.expectations.min_examples_per_class)
    )
    return suite


def _describe_failure(
    split: str, result, frame: pd.DataFrame, shown: str, cfg: ThawConfig, largest_carved_class: dict[str, int]
) -> str:
    """One line per failed expectation. Rows are named by their position in the split
    file (its data row number), never by id; the text shown has structured PII masked.
    ``largest_carved_class``: for each split carved out of the train file, the rows of the
    train file's largest class before the carve."""
    cfg_ = result.expectation_config
    column = cfg_.kwargs.get("column")
    what = f"{cfg_.type}({column})" if column else cfg_.type
    res = result.result or {}
    if split.endswith("class_counts") and cfg_.type == "expect_table_row_count_to_be_between":
        return f"{split}: {res.get('observed_value')} class(es) in train; a classifier needs at least 2"
    if split.endswith("class_counts") and cfg_.type == "expect_column_min_to_be_between":
        return f"{split}: {what} failed: {_too_few_per_class(frame, cfg.curation.expectations.min_examples_per_class)}"
    if (
        split in largest_carved_class
        and cfg_.type == "expect_table_row_count_to_be_between"
        and res.get("observed_value") == 0
    ):
        why = _nothing_carved(split, cfg, largest_carved_class[split], tuple(largest_carved_class))
        return f"{split}: {what} failed (observed 0): {why}"
    if cfg_.meta == SEEN_IN_TRAINING:
        unseen = _unseen_labels(
            split, frame, res.get("unexpected_index_list") or [], cfg_.kwargs.get("value_set") or ()
        )
        return f"{split}: {what} failed: {unseen}"
    if split == "train" and cfg_.type == "expect_table_row_count_to_be_between" and "observed_value" in res:
        return f"{split}: {what} failed (observed {res['observed_value']}): {_train_rows(res['observed_value'], cfg)}"
    if "observed_value" in res and not res.get("unexpected_index_list"):
        return f"{split}: {what} failed (observed {res['observed_value']})"
    rows = list(res.get("unexpected_index_list") or [])
    examples = "; ".join(
        f"row {i + 1}: {mask_residual_pii(str(frame[shown].iat[i]))[:80]!r}" for i in rows[:MAX_EXAMPLES]
    )
    return f"{split}: {what} failed on {res.get('unexpected_count', len(rows))} rows, e.g. {examples}"


def _train_rows(observed: int, cfg: ThawConfig) -> str:
    """Why the training split's row count halts the run, and the setting that says so."""
    e = cfg.curation.expectations
    if observed > e.max_rows:
        return f"more training rows than curation.expectations.max_rows ({e.max_rows})"
    carved = [s for s in ("validation", "test") if getattr(cfg.data, s) is None]
    after = f" (after curation, and after {' and '.join(carved)} carved out of the train file)" if carved else ""
    return (
        f"fewer training rows{after} than curation.expectations.min_rows ({e.min_rows}); "
        "give more rows, or lower it if a model from so few is what you want"
    )


def _unseen_labels(split: str, frame: pd.DataFrame, rows: list[int], training: Iterable[str] = ()) -> str:
    """The rows of ``split`` whose label the training split does not have, by label, and
    which of those labels differ from a ``training`` label only in case. Kept, they would
    be classes with no training row: counted in every macro average, the folds and the
    gate's evidence included, and never predicted."""
    counts = frame[LABEL].iloc[rows].value_counts()
    named = _named_counts(list(counts.items()))
    first = ", ".join(str(i + 1) for i in sorted(rows)[:MAX_EXAMPLES])
    near = _case_only(counts.index, training)
    return (
        f"{len(rows)} rows of {len(counts)} label(s) the training split does not have: {named} "
        f"(rows {first}{', ...' if len(rows) > MAX_EXAMPLES else ''} of the curated split){near}; "
        f"a model trained on it can never answer them: drop those rows from the {split} file, or give training rows "
        "of those labels"
    )


def _case_only(unseen: Iterable[object], training: Iterable[str]) -> str:
    """' (...)' naming the first unseen labels that are a training label in other case
    (labels are classes as written: thaw.datasets.case_variants), or ''."""
    by_case = {}
    for label in training:
        by_case.setdefault(str(label).casefold(), str(label))
    near = [(str(u), by_case[str(u).casefold()]) for u in unseen if str(u).casefold() in by_case]
    if not near:
        return ""
    pairs = ", ".join(f"{mask_residual_pii(u)[:60]!r} as {mask_residual_pii(t)[:60]!r}" for u, t in near[:MAX_EXAMPLES])
    more = f" and {len(near) - MAX_EXAMPLES} more" if len(near) > MAX_EXAMPLES else ""
    return f" (in other case in training: {pairs}{more}; labels are matched with their case)"


def _too_few_per_class(counts: pd.DataFrame, minimum: int) -> str:
    """The classes under ``min_examples_per_class``, fewest first, labels masked and cut."""
    few = counts[counts["examples"] < minimum].sort_values(["examples", "label"], kind="stable")
    named = _named_counts(list(zip(few["label"], few["examples"], strict=True)))
    return (
        f"{len(few)} class(es) with fewer than {minimum} training rows "
        f"(curation.expectations.min_examples_per_class): {named}"
    )


def _named_counts(counted: list[tuple[object, int]], shown: int = 5) -> str:
    """'label' n, ... for the first ``shown`` (label, count) pairs, labels masked and cut,
    then how many more."""
    named = ", ".join(f"{mask_residual_pii(str(label))[:60]!r} {n}" for label, n in counted[:shown])
    return named + (f" and {len(counted) - shown} more" if len(counted) > shown else "")


def _nothing_carved(split: str, cfg: ThawConfig, largest_class: int, carved: tuple[str, ...]) -> str:
    """Why a split carved out of the train file (with the other ``carved`` splits) came
    out empty, and what to do."""
    fraction = getattr(cfg.split, f"{split}_fraction")
    return (
        f"carved out of the train file, it takes round(rows x {fraction}) of each class (split.{split}_fraction) "
        f"as long as the class keeps {TRAIN_ROWS_KEPT} training rows, none from a class of fewer than "
        f"{cfg.split.smallest_class_giving_a_row(split, carved)}, and the largest class here has {largest_class}; "
        f"give a --{split} file, or more rows per class"
    )


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    ctx.add_data_docs_site(
        site_name="thaw",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return ctx


def validate_frames(
    frames: dict[str, pd.DataFrame], cfg: ThawConfig, out_dir: Path
) -> tuple[bool, list[str], Path, list[dict]]:
    """Run the suite on each split (and class counts on train); save Data Docs.

    Returns (success, one message per failing expectation, Data Docs directory, one
    record per expectation run).
    """
    import great_expectations as gx

    text_col, label_col, id_col = TEXT, LABEL, ID
    docs_dir = out_dir / artifacts.DATA_DOCS
    ctx = _context(docs_dir)
    source = ctx.data_sources.add_pandas("curated")
    counts = frames["train"][label_col].value_counts().rename_axis("label").reset_index(name="examples")
    seen = sorted(set(frames["train"][label_col]))
    batches = {
        split: (
            _with_checks(f, text_col, cfg.curation.pii.entities),
            _suite(cfg, split, list(f.columns), text_col, label_col, id_col, None if split == "train" else seen),
        )
        for split, f in frames.items()
    }
    batches["train_class_counts"] = (counts, _class_count_suite(cfg))
    # the splits carved out of the train file (no file of their own), and its largest class
    carved = [s for s in frames if s != "train" and getattr(cfg.data, s, "") is None]
    before = pd.concat([frames[s][label_col] for s in ("train", *carved)]).value_counts()
    largest = {s: int(before.max()) if len(before) else 0 for s in carved}
    failures: list[str] = []
    checks: list[dict] = []
    for name, (frame, suite) in batches.items():
        definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=f"vd-{name}", data=definition, suite=ctx.suites.add(suite))
        )
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"cp-{name}",
                validation_definitions=[vd],
                result_format={"result_format": "COMPLETE"},
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["thaw"])],
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        for run in outcome.run_results.values():
            shown = LABEL if name.endswith("counts") else text_col
            failures += [_describe_failure(name, r, frame, shown, cfg, largest) for r in run.results if not r.success]
            checks += [_check_record(name, r) for r in run.results]
    return not failures, failures, docs_dir, checks


@task(name="validate-curated-data")
def validate_curated_data(files: dict[str, Path], cfg: ThawConfig, run_dir: Path) -> ExpectationsReport:
    """Validate the curated split files; raise ExpectationsFailed naming each failure.

    The summary (JSON, every expectation with its result; and markdown) and the Data
    Docs are written under ``run_dir`` either way.
    """
    frames = {s: read_table(p) for s, p in files.items()}
    success, failures, docs_dir, checks = validate_frames(frames, cfg, run_dir)
    summary = run_dir / artifacts.EXPECTATIONS
    body = {"success": success, "failures": failures, "checks": checks}
    summary.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
    markdown = run_dir / artifacts.DATA_CHECKS
    markdown.write_text(checks_markdown(success, checks, failures), encoding="utf-8")
    if not success:
        raise ExpectationsFailed(failures, str(markdown))
    return ExpectationsReport(success, summary, docs_dir, markdown)
