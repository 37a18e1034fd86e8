"""PII scrubbing with Presidio: batched analysis, keyed pseudonyms, an offline model.

The analyzer runs on the offline ``en_core_web_sm`` (loaded by its installed path,
never downloaded) with only the recognizers the configured entities need. Texts go
through spaCy in batches (``nlp.pipe`` via Presidio's ``process_batch``, parser off),
and each detected value is replaced by ``<TYPE_xxxxxx>``, a keyed hash of the value:
the same value gets the same placeholder across the dataset and across runs that use
the same secret. The secret itself never leaves this module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thaw.checksums import iban_ok
from thaw.config import PiiConfig
from thaw.errors import UserError

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

log = logging.getLogger(__name__)

# Custom recognizers thaw adds to Presidio's predefined ones (which have neither).
STREET_ADDRESS_REGEX = (
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close)\b"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)?"
)
DATE_OF_BIRTH_REGEXES = (
    r"\b(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|1[0-2])[/.-](?:19|20)\d{2}\b",
    r"\b(?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01])[/.-](?:19|20)\d{2}\b",
    r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b",
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
    r"\s+\d{1,2},?\s+(?:19|20)\d{2}\b",
)
# Names in sign-offs and introductions, which the small spaCy model often misses.
SIGNOFF_NAME_REGEX = (
    r"(?<=(?:\b(?:[Rr]egards|[Tt]hanks|[Cc]heers|[Bb]est|[Ss]incerely|[Tt]his is|[Mm]y name is|"
    r"[Nn]ame:)[,:]?\s+|(?:^|\s)[-\u2014]\s*))"
    r"[A-Z][a-z]+(?:[ '-][A-Z][a-z]+){1,2}\b"
)
# Case matters for these patterns (Presidio's default flags ignore case).
CASE_SENSITIVE_FLAGS = re.DOTALL | re.MULTILINE


@dataclass(frozen=True)
class PiiSecret:
    """The pseudonymisation key and where it came from (the key is never printed)."""

    key: bytes = field(repr=False)
    source: str

    @property
    def fingerprint(self) -> str:
        """A short one-way id of the key, safe to record, to tell runs' keys apart."""
        return hashlib.sha256(b"thaw-fingerprint:" + self.key).hexdigest()[:12]


def load_pii_secret(cfg: PiiConfig) -> PiiSecret:
    """The key from ``cfg.secret_env`` or ``cfg.secret_file``; else an ephemeral one.

    An ephemeral key is logged as such (placeholders then differ between runs).
    """
    value = os.environ.get(cfg.secret_env, "")
    if value:
        return PiiSecret(value.encode(), f"env:{cfg.secret_env}")
    if cfg.secret_file is not None:
        path = Path(cfg.secret_file).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: PII secret file not found (curation.pii.secret_file)")
        return PiiSecret(path.read_bytes().strip(), f"file:{path}")
    log.warning(
        "No PII secret set (%s or curation.pii.secret_file): using an ephemeral one; "
        "pseudonyms will not match across runs.",
        cfg.secret_env,
    )
    return PiiSecret(secrets.token_bytes(32), "ephemeral")


def pseudonym(secret: PiiSecret, entity: str, value: str) -> str:
    """``<ENTITY_xxxxxx>``: keyed hash of the whitespace/case-normalised value."""
    norm = " ".join(value.split()).casefold().encode()
    digest = hmac.new(secret.key, entity.encode() + b"\x00" + norm, hashlib.sha256).hexdigest()
    return f"<{entity}_{digest[:6]}>"


def spacy_model_path(name: str) -> str:
    """Installed path of a packaged spaCy model, or ``name`` if it is a directory."""
    if Path(name).is_dir():
        return str(name)
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError:
        raise UserError(f"spaCy model {name!r} is not installed and is not a directory") from None
    base = Path(module.__file__).parent
    candidates = sorted(p for p in base.iterdir() if (p / "config.cfg").is_file())
    if not candidates:
        raise UserError(f"spaCy model package {name!r} holds no model directory")
    return str(candidates[-1])


def _thaw_recognizers() -> list:
    from presidio_analyzer import Pattern, PatternRecognizer

    address = PatternRecognizer(
        supported_entity="ADDRESS",
        name="ThawStreetAddressRecognizer",
        patterns=[Pattern("street address", STREET_ADDRESS_REGEX, 0.7)],
        context=["address", "moved", "street", "live", "ship", "deliver"],
        global_regex_flags=CASE_SENSITIVE_FLAGS,
    )
    signoff = PatternRecognizer(
        supported_entity="PERSON",
        name="ThawSignoffNameRecognizer",
        patterns=[Pattern("name in sign-off", SIGNOFF_NAME_REGEX, 0.6)],
        global_regex_flags=CASE_SENSITIVE_FLAGS,
    )
    dob = PatternRecognizer(
        supported_entity="DATE_OF_BIRTH",
        name="ThawDateOfBirthRecognizer",
        patterns=[Pattern(f"date {i}", rx, 0.6) for i, rx in enumerate(DATE_OF_BIRTH_REGEXES)],
        context=["born", "birth", "dob", "birthday"],
    )

    class ChecksummedIbanRecognizer(PatternRecognizer):
        """IBANs by shape and mod-97 checksum, in any country (Presidio's misses some)."""

        def validate_result(self, pattern_text: str) -> bool:
            return iban_ok(pattern_text)

    iban = ChecksummedIbanRecognizer(
        supported_entity="IBAN_CODE",
        name="ThawChecksummedIbanRecognizer",
        patterns=[Pattern("iban", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", 0.5)],
        global_regex_flags=CASE_SENSITIVE_FLAGS,
    )
    return [address, dob, signoff, iban]


def build_analyzer(cfg: PiiConfig) -> AnalyzerEngine:
    """A Presidio AnalyzerEngine on the offline spaCy model; nothing is downloaded."""
    from thaw.offline import use_bundled_public_suffix_list

    use_bundled_public_suffix_list()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    # Presidio warns once per row about spaCy labels it does not map: map what we use
    # and ignore the rest explicitly (also keeps the run log clean).
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    ner = NerModelConfiguration(
        model_to_presidio_entity_mapping={
            "PERSON": "PERSON",
            "PER": "PERSON",
            "GPE": "LOCATION",
            "LOC": "LOCATION",
            "FAC": "LOCATION",
            "NORP": "NRP",
            "ORG": "ORGANIZATION",
            "DATE": "DATE_TIME",
            "TIME": "DATE_TIME",
        },
        labels_to_ignore=[
            "CARDINAL",
            "ORDINAL",
            "QUANTITY",
            "PERCENT",
            "MONEY",
            "PRODUCT",
            "EVENT",
            "WORK_OF_ART",
            "LAW",
            "LANGUAGE",
        ],
        low_score_entity_names=["ORG", "ORGANIZATION"],
    )
    engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": spacy_model_path(cfg.spacy_model)}], ner_model_configuration=ner
    )
    engine.load()
    nlp = engine.nlp["en"]
    for pipe in ("parser",):  # Presidio needs tokens, lemmas and entities, not a parse
        if pipe in nlp.pipe_names:
            nlp.disable_pipe(pipe)
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    for recognizer in _thaw_recognizers():
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    score: float


def choose_spans(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: overlapping detections merge into one span covering all of
    them, typed by its longest member (a city found inside a street address must not
    leave the street behind)."""
    merged: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < max(s.end for s in merged[-1]):
            merged[-1].append(span)
        else:
            merged.append([span])
    out = []
    for group in merged:
        lead = max(group, key=lambda s: (s.end - s.start, s.score))
        out.append(
            Span(min(s.start for s in group), max(s.end for s in group), lead.entity, max(s.score for s in group))
        )
    return out


def replace_spans(text: str, spans: Sequence[Span], secret: PiiSecret) -> str:
    """``text`` with every span replaced by its pseudonym."""
    parts, cursor = [], 0
    for span in spans:
        parts.append(text[cursor : span.start])
        parts.append(pseudonym(secret, span.entity, text[span.start : span.end]))
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)


@dataclass
class ScrubStats:
    """Counts only: entities found by type and rows changed (no values, ever)."""

    entities: Counter = field(default_factory=Counter)
    rows_changed: int = 0
    rows_seen: int = 0
    ner_rows: int = 0

    def merge(self, other: ScrubStats) -> None:
        """Add the counts of ``other`` (e.g. one worker's chunk) to these."""
        self.entities.update(other.entities)
        self.rows_changed += other.rows_changed
        self.rows_seen += other.rows_seen
        self.ner_rows += other.ner_rows


NER_ENTITIES = {"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"}
# Which recognizers can possibly match, by a cheap necessary condition: a text with no
# run of 7+ digits cannot hold a valid phone number, one without '@' no email, and so on.
_HINTS = {
    "EMAIL_ADDRESS": re.compile(r"@"),
    "URL": re.compile(r"\w\.\w"),
    "IP_ADDRESS": re.compile(r"\d\.\d|::|[0-9a-fA-F]:[0-9a-fA-F]"),
    "PHONE_NUMBER": re.compile(r"(?:\d[^\w]{0,3}){7}"),
    "CREDIT_CARD": re.compile(r"(?:\d[\s-]?){12}"),
    "IBAN_CODE": re.compile(r"(?i)[a-z]{2}\s?\d{2}"),
    "US_SSN": re.compile(r"(?:\d[\s.-]?){9}"),
    "ADDRESS": re.compile(r"\d\s+[A-Z]"),
    "DATE_OF_BIRTH": re.compile(r"(?:19|20)\d\d"),
}
_CAPITALISED = re.compile(r"(?:(?<=[^.!?\s]\s)|(?<=,\s)|(?<=[-:]\s))([A-Z][a-z'-]+)|\b([A-Z][a-z'-]+)\s+[A-Z][a-z'-]+")


# Capitalised words that are never a person or a place in support messages.
NOT_NAMES = {
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "regards",
    "dear",
    "ok",
    "i'd",
    "i'm",
    "i've",
    "i'll",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
}


class EntityPlanner:
    """Per text: which entities' recognizers can match, and whether spaCy NER is worth running.

    NER runs only on texts with a name-like token: a capitalised word that is not a
    stop word, inside a sentence, or two capitalised words in a row anywhere. The small
    spaCy model finds almost no person or place without one.
    """

    def __init__(self, cfg: PiiConfig, stop_words: set[str]) -> None:
        self.entities = list(cfg.entities)
        self.ner = [e for e in self.entities if e in NER_ENTITIES]
        self.stop = {w.casefold() for w in stop_words} | NOT_NAMES

    def needs_ner(self, text: str) -> bool:
        if not self.ner:
            return False
        for m in _CAPITALISED.finditer(text):
            word = m.group(1) or m.group(2)
            if word.casefold() not in self.stop or m.group(2):
                return True
        return False

    def entities_for(self, text: str, ner: bool) -> list[str]:
        out = [e for e in self.entities if e not in NER_ENTITIES and (e not in _HINTS or _HINTS[e].search(text))]
        return out + (self.ner if ner else [])


def _ner_docs(texts: Sequence[str], analyzer: AnalyzerEngine, plan: list[bool], batch_size: int) -> Iterator:
    """spaCy docs (tok2vec + ner only) for the planned texts, batched, in order."""
    nlp = analyzer.nlp_engine.nlp["en"]
    with nlp.select_pipes(enable=[p for p in ("tok2vec", "ner") if p in nlp.pipe_names]):
        yield from nlp.pipe((t for t, p in zip(texts, plan, strict=True) if p), batch_size=batch_size)


def _recognizers_by_entity(analyzer: AnalyzerEngine, entities: Sequence[str]) -> dict[str, list]:
    """The registry's recognizers for each entity, looked up once (Presidio does it per call)."""
    return {e: analyzer.registry.get_recognizers(language="en", entities=[e]) for e in entities}


def analyze_text(
    text: str, entities: Sequence[str], recognizers: dict[str, list], artifacts, analyzer: AnalyzerEngine
) -> list:
    """Presidio's recognizers for ``entities`` on ``text``, each recognizer once.

    Pattern recognizers need no NLP artifacts; with artifacts (NER texts) the spaCy
    recognizer runs too and Presidio's context enhancer adjusts the scores.
    """
    seen, results = set(), []
    for entity in entities:
        for rec in recognizers[entity]:
            if id(rec) in seen or (artifacts is None and rec.__class__.__name__ == "SpacyRecognizer"):
                continue
            seen.add(id(rec))
            found = rec.analyze(text, [e for e in entities if e in rec.supported_entities], artifacts) or []
            for r in found:
                r.recognition_metadata = r.recognition_metadata or {}
                r.recognition_metadata.setdefault("recognizer_name", rec.name)
                r.recognition_metadata.setdefault("recognizer_identifier", rec.id)
            results += found
    if artifacts is not None and results:
        results = analyzer.context_aware_enhancer.enhance_using_context(
            text=text,
            raw_results=results,
            nlp_artifacts=artifacts,
            recognizers=[r for rs in recognizers.values() for r in rs],
        )
    return results


def scrub_texts(
    texts: Sequence[str],
    analyzer: AnalyzerEngine,
    secret: PiiSecret,
    cfg: PiiConfig,
    stats: ScrubStats | None = None,
) -> Iterator[str]:
    """Yield each text with its PII replaced by pseudonyms, in input order.

    spaCy NER runs batched, only on texts that can hold a name or place; each text runs
    only the recognizers that can match it (see ``EntityPlanner``).
    """
    engine = analyzer.nlp_engine
    planner = EntityPlanner(cfg, set(engine.nlp["en"].Defaults.stop_words))
    recognizers = _recognizers_by_entity(analyzer, cfg.entities)
    plan = [planner.needs_ner(t) for t in texts]
    docs = _ner_docs(texts, analyzer, plan, cfg.batch_size)
    for text, ner in zip(texts, plan, strict=True):
        entities = planner.entities_for(text, ner)
        spans: list[Span] = []
        if entities:
            artifacts = engine._doc_to_nlp_artifact(next(docs), "en") if ner else None
            spans = choose_spans(
                Span(r.start, r.end, r.entity_type, r.score)
                for r in analyze_text(text, entities, recognizers, artifacts, analyzer)
                if r.score >= cfg.score_threshold
            )
        if stats is not None:
            stats.rows_seen += 1
            stats.ner_rows += ner
            stats.entities.update(s.entity for s in spans)
            stats.rows_changed += bool(spans)
        yield replace_spans(text, spans, secret) if spans else text


_FORKED: dict[str, tuple] = {}


def _scrub_chunk(texts: list[str]) -> tuple[list[str], ScrubStats]:
    analyzer, secret, cfg = _FORKED["state"]
    stats = ScrubStats()
    return list(scrub_texts(texts, analyzer, secret, cfg, stats)), stats


def scrub_texts_parallel(
    texts: Sequence[str],
    analyzer: AnalyzerEngine,
    secret: PiiSecret,
    cfg: PiiConfig,
    stats: ScrubStats,
) -> Iterator[str]:
    """``scrub_texts`` over several processes for large inputs, same output, same order.

    Workers are forked after the analyzer is loaded, so they share it instead of each
    loading spaCy and Presidio again; small inputs stay in this process.
    """
    import multiprocessing

    workers = cfg.workers or os.cpu_count() or 1
    if workers <= 1 or len(texts) < cfg.parallel_min_rows:
        yield from scrub_texts(texts, analyzer, secret, cfg, stats)
        return
    _FORKED["state"] = (analyzer, secret, cfg)
    chunks = [list(texts[i : i + cfg.chunk_rows]) for i in range(0, len(texts), cfg.chunk_rows)]
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for out, part in pool.imap(_scrub_chunk, chunks):
                stats.merge(part)
                yield from out
    finally:
        _FORKED.clear()
