"""PII scrubbing: Presidio's recognizers, spaCy's NER and thaw's own rules, then keyed
pseudonyms.

``PiiDetector`` finds spans in a batch of texts, each read through its detection view
(``thaw.pii.view``: NFKC, Unicode spaces as spaces, in-word format characters left out)
and mapped back to the text's own characters:

- the registered recognizers that run before NER (``thaw.pii.recognizers``):
  Presidio's pattern recognizers for the configured entities, each run only on texts
  that can hold a match, and thaw's own rules (cards, IBANs, e-mails and phones as the
  residual check sees them, dates of birth, places, names after cues, street addresses
  and address blocks, postal codes, every other occurrence of a detected name);
- spaCy NER (the offline ``en_core_web_sm``, loaded by its installed path, nothing
  downloaded), batched with ``nlp.pipe`` and only its tokenizer, tok2vec and NER, on the
  texts with a capitalised word that is not a stop word and that no recognizer claimed;
- the recognizers that run after NER, on what it found (postal codes after its places,
  the other occurrences of its names).

Overlapping detections merge into one span; each span is replaced by ``<TYPE_xxxxxx>``, a
keyed hash of the value: the same value gets the same placeholder across the dataset and
across runs that use the same secret. The secret itself never leaves this module and is
never a Prefect parameter: workers elsewhere (Dask) only detect; replacing happens here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import signal
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import regex

from thaw.config import PiiConfig
from thaw.errors import UserError
from thaw.pii import rules
from thaw.pii.recognizers import NER_ENTITIES, NER_LABELS, Recognizer, enabled_recognizers
from thaw.pii.spans import Span, choose_spans, covered
from thaw.pii.view import detection_view, normalised_value

log = logging.getLogger(__name__)

FINGERPRINT_SALT_FILE = "pii-fingerprint-salt"
# A shorter key could be guessed (an empty file, "secret", "changeme"), and with it anyone
# who reads the curated splits could test names against their pseudonyms.
MIN_KEY_BYTES = 16
EXAMPLE_KEYS = frozenset({b"replace-with-a-long-random-string"})  # infra/.env.example's, copied and not replaced


@dataclass(frozen=True)
class PiiSecret:
    """The pseudonymisation key and where it came from (the key is never printed)."""

    key: bytes = field(repr=False)
    source: str

    def fingerprint(self, salt: bytes) -> str:
        """A short keyed id of the key (HMAC with the workspace's salt), safe to record: it
        tells runs' keys apart without letting anyone test a guessed key elsewhere."""
        return hmac.new(salt, b"thaw-fingerprint:" + self.key, hashlib.sha256).hexdigest()[:16]


def workspace_salt(state_dir: Path) -> bytes:
    """The workspace's fingerprint salt (random, created once in the state directory)."""
    path = Path(state_dir) / FINGERPRINT_SALT_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.replace(path) if not path.exists() else tmp.unlink()
    return path.read_bytes()


def load_pii_secret(cfg: PiiConfig) -> PiiSecret:
    """The key from ``cfg.secret_env`` or ``cfg.secret_file``; else an ephemeral one.

    An ephemeral key is logged as such (placeholders then differ between runs). A key given
    but guessable (under ``MIN_KEY_BYTES``, or the example file's placeholder) is refused.
    """
    value = os.environ.get(cfg.secret_env, "")  # empty is unset (as compose passes an unset variable)
    if value:  # stripped as a file's key is: one key, one set of pseudonyms, wherever it is kept
        return _strong(PiiSecret(value.strip().encode(), f"env:{cfg.secret_env}"), cfg.secret_env)
    if cfg.secret_file is not None:
        path = Path(cfg.secret_file).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: PII secret file not found (curation.pii.secret_file)")
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the PII secret file ({exc.strerror or exc})") from None
        return _strong(PiiSecret(key, f"file:{path}"), str(path))
    log.warning(
        "No PII secret set (%s or curation.pii.secret_file): using an ephemeral one; "
        "pseudonyms will not match across runs.",
        cfg.secret_env,
    )
    return PiiSecret(secrets.token_bytes(32), "ephemeral")


def _strong(secret: PiiSecret, where: str) -> PiiSecret:
    """``secret``, refused (UserError naming ``where``) when its key is too short to keep
    pseudonyms from being tested against guessed names."""
    if secret.key in EXAMPLE_KEYS:
        raise UserError(f"{where}: the PII key is infra/.env.example's placeholder; replace it with a random one")
    if len(secret.key) < MIN_KEY_BYTES:
        raise UserError(
            f"{where}: the PII key is {len(secret.key)} bytes; it needs at least {MIN_KEY_BYTES}, or a guessed key "
            "would let anyone reading the curated data test names against their pseudonyms (make one: "
            "python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return secret


def pseudonym(secret: PiiSecret, entity: str, value: str) -> str:
    """``<ENTITY_xxxxxx>``: keyed hash of the whitespace/case-normalised value."""
    norm = normalised_value(value).encode()
    digest = hmac.new(secret.key, entity.encode() + b"\x00" + norm, hashlib.sha256).hexdigest()
    return f"<{entity}_{digest[:6]}>"


def keyed_id(secret: PiiSecret, value: str) -> str:
    """``id-`` and 16 hex digits of a keyed hash of ``value``: unique as the ids it
    replaces are (64 bits, where a pseudonym's 24 would collide among thousands of ids),
    the same under the same key, and telling nothing of the value."""
    return "id-" + hmac.new(secret.key, b"id\x00" + value.encode(), hashlib.sha256).hexdigest()[:16]


def _rule_spans(value: str, detector: PiiDetector) -> list[Span]:
    """The spans of ``value`` the rules that find something other than names and places
    find (NER reads "T-0010" as a person: short values are no sentences), merged."""
    wanted = detector.entities - NER_ENTITIES
    useful = [r for r in detector.before_ner if r.entities & wanted]  # not the name and place rules
    view = detection_view(value)
    return choose_spans(view.spans_to_original(s for s in _run(useful, view.text, []) if s.entity in wanted))


def protect_ids(ids: Sequence[str], detector: PiiDetector, secret: PiiSecret, mode: str) -> tuple[list[str], int]:
    """Ids as the curated data carries them (``curation.pii.ids``), and how many were
    replaced: ``scrub`` replaces those in which the rules find PII, ``hash`` all, ``keep``
    none. Names and places are left to ``hash``: NER reads "T-0010" as a person."""
    if mode == "keep":
        return list(ids), 0
    if mode == "hash":
        return [keyed_id(secret, v) for v in ids], len(ids)
    found = {v: bool(_rule_spans(v, detector)) for v in dict.fromkeys(ids)}
    out = [keyed_id(secret, v) if found[v] else v for v in ids]
    return out, sum(a != b for a, b in zip(ids, out, strict=True))


def scrub_values(values: Sequence[str], detector: PiiDetector, secret: PiiSecret) -> tuple[list[str], int]:
    """Categorical values carried beside the text (labels, slices) with what the rules find
    in them replaced by pseudonyms, as in the text: one value keeps one spelling across
    splits and runs under one key. Returns the values and how many rows changed."""
    scrubbed = {}
    for v in dict.fromkeys(values):
        spans = _rule_spans(v, detector)
        scrubbed[v] = replace_spans(v, spans, secret) if spans else v
    out = [scrubbed[v] for v in values]
    return out, sum(a != b for a, b in zip(values, out, strict=True))


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


def replace_spans(text: str, spans: Sequence[Span], secret: PiiSecret) -> str:
    """``text`` with every span replaced by its pseudonym."""
    return replace_spans_with(text, spans, lambda span, value: pseudonym(secret, span.entity, value))


def replace_spans_with(text: str, spans: Sequence[Span], replacement: Callable[[Span, str], str]) -> str:
    """``text`` with every span (in order, not overlapping) replaced by ``replacement(span, value)``."""
    parts, cursor = [], 0
    for span in spans:
        parts.append(text[cursor : span.start])
        parts.append(replacement(span, text[span.start : span.end]))
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)


_HOST = socket.gethostname()


@dataclass
class ScrubStats:
    """Counts only: entities found by type, rows changed and the processes that detected
    (no values, ever)."""

    entities: Counter = field(default_factory=Counter)
    rows_changed: int = 0
    rows_seen: int = 0
    ner_rows: int = 0
    # the processes that detected ("host:pid"), wherever they ran: in this one, forked
    # workers or a Dask cluster of any size
    detected_in: set[str] = field(default_factory=set)

    @property
    def processes(self) -> int:
        return len(self.detected_in)

    def merge(self, other: ScrubStats) -> None:
        """Add the counts of ``other`` (e.g. one worker's chunk) to these."""
        self.entities.update(other.entities)
        self.rows_changed += other.rows_changed
        self.rows_seen += other.rows_seen
        self.ner_rows += other.ner_rows
        self.detected_in |= other.detected_in

    def count(self, spans: Sequence[Span], ner: bool) -> None:
        self.rows_seen += 1
        self.detected_in.add(f"{_HOST}:{os.getpid()}")
        self.ner_rows += ner
        self.entities.update(s.entity for s in spans)
        self.rows_changed += bool(spans)


_CAPITALISED = regex.compile(r"\b\p{Lu}[\p{L}'’-]*")


class PiiDetector:
    """Finds PII spans of the configured entity types; build it once per process."""

    def __init__(self, cfg: PiiConfig) -> None:
        from thaw.offline import use_bundled_public_suffix_list

        use_bundled_public_suffix_list()
        import spacy

        self.cfg = cfg
        self.entities = frozenset(cfg.entities)
        self.nlp = spacy.load(spacy_model_path(cfg.spacy_model), exclude=["parser", "senter", "lemmatizer"])
        self.ner_pipes = [p for p in ("tok2vec", "ner") if p in self.nlp.pipe_names]
        _use_numpy_blas(self.nlp)
        self.stop_words = frozenset(w.casefold() for w in self.nlp.Defaults.stop_words) | rules.NOT_NAMES
        self.before_ner, self.after_ner = enabled_recognizers(cfg)

    def needs_ner(self, text: str, found: Sequence[Span]) -> bool:
        """True when the text has a capitalised word that is not a stop word and that no
        pattern or rule has already claimed: the small model finds almost no person or
        place without one, and one already inside a detected span gains nothing from it."""
        if not self.entities & NER_ENTITIES:
            return False
        claimed = covered(found)
        for m in _CAPITALISED.finditer(text):
            if m.group().casefold() not in self.stop_words and not claimed(m.start()):
                return True
        return False

    def detect(self, texts: Sequence[str]) -> Iterator[tuple[list[Span], bool]]:
        """For each text, in order: (its merged PII spans, whether NER ran on it)."""
        read = [detection_view(t) for t in texts]
        views = [r.text for r in read]
        found = [_run(self.before_ner, v, []) for v in views]
        plan = [self.needs_ner(v, f) for v, f in zip(views, found, strict=True)]
        chunks = [ner_chunks(v) if p else [] for v, p in zip(views, plan, strict=True)]
        with self.nlp.select_pipes(enable=self.ner_pipes):
            docs = self.nlp.pipe((c for parts in chunks for _, c in parts), batch_size=self.cfg.batch_size)
            for view, spans, ner, parts, how in zip(views, found, plan, chunks, read, strict=True):
                if ner:
                    ents = [
                        Span(offset + e.start_char, offset + e.end_char, NER_LABELS[e.label_])
                        for offset, doc in ((offset, next(docs)) for offset, _ in parts)
                        for e in doc.ents
                        if e.label_ in NER_LABELS
                    ]
                    spans = _run(self.after_ner, view, spans + ents)
                wanted = how.spans_to_original(s for s in spans if s.entity in self.entities)
                yield choose_spans(wanted), ner


NER_CHUNK = 100_000  # characters per NER pass: spaCy refuses texts over nlp.max_length (1M; E088)


def ner_chunks(text: str, size: int = NER_CHUNK) -> list[tuple[int, str]]:
    """(offset, piece) of ``text`` in pieces of at most ``size`` characters, cut at a
    space in the second half of each piece where there is one (a name is not cut in two)."""
    pieces, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut + 1 if cut >= 0 else end
        pieces.append((start, text[start:end]))
        start = end
    return pieces


def _run(recognizers: Sequence[Recognizer], text: str, found: list[Span]) -> list[Span]:
    """``found`` plus what each recognizer finds in turn (each sees what came before it)."""
    for recognizer in recognizers:
        if recognizer.hint(text):
            found = found + recognizer.find(text, found)
    return found


def _use_numpy_blas(nlp) -> None:
    """Run the model's matrix products through numpy's BLAS instead of thinc's bundled
    blis: measured here (AVX-512), NER runs ~1.6x faster on one thread."""
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    for _, component in nlp.pipeline:
        model = getattr(component, "model", None)
        for node in model.walk() if model is not None else ():
            node.ops = ops


def scrub_texts(
    texts: Sequence[str], detector: PiiDetector, secret: PiiSecret, stats: ScrubStats | None = None
) -> Iterator[str]:
    """Yield each text with its PII replaced by pseudonyms, in input order."""
    for text, (spans, ner) in zip(texts, detector.detect(texts), strict=True):
        if stats is not None:
            stats.count(spans, ner)
        yield replace_spans(text, spans, secret) if spans else text


_FORKED: dict[str, tuple] = {}


def start_worker() -> None:
    """Pool initializer of a forked detection worker:

    - SIGTERM at its default, so ``Pool.terminate`` (which the pool's exit calls) ends
      the worker whatever handler the parent had when it forked. Under a flow run that
      is Prefect's, which runs in Python, only when the worker's main thread checks for
      signals. Seen here: ``thaw run`` on CLINC150 stalled in curation, the parent joining
      a worker asleep on the task queue's lock (which the terminating parent holds), with
      SIGTERM caught and none pending, until the worker was killed by hand; most likely
      the signal landed between the worker's last check and its wait, so the handler
      never ran. A handler that does not end the process stalls it every time
      (``tests/unit/curation/test_pii_workers.py``);
    - one BLAS thread (the workers already fill the cores; NER's matrix products in two
      threads each would only fight over them)."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threadpool_limits(1)


def _detect_chunk(texts: list[str]) -> tuple[list[list[Span]], ScrubStats]:
    (detector,) = _FORKED["state"]
    stats, out = ScrubStats(), []
    for spans, ner in detector.detect(texts):
        stats.count(spans, ner)
        out.append(spans)
    return out, stats


def scrub_texts_parallel(
    texts: Sequence[str], detector: PiiDetector, secret: PiiSecret, stats: ScrubStats
) -> Iterator[str]:
    """``scrub_texts`` over several processes for large inputs, same output, same order.

    Workers are forked after the detector is loaded, so they share it instead of each
    loading spaCy and Presidio again; they only detect (the key stays in this process).
    Small inputs stay in this process.
    """
    import multiprocessing

    from thaw.modeling import usable_cores

    cfg = detector.cfg
    workers = cfg.workers or usable_cores()
    if workers <= 1 or len(texts) < cfg.parallel_min_rows:
        yield from scrub_texts(texts, detector, secret, stats)
        return
    _FORKED["state"] = (detector,)
    chunks = [list(texts[i : i + cfg.chunk_rows]) for i in range(0, len(texts), cfg.chunk_rows)]
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=start_worker) as pool:
            for chunk, (spans, part) in zip(chunks, pool.imap(_detect_chunk, chunks), strict=True):
                stats.merge(part)
                yield from (replace_spans(t, s, secret) if s else t for t, s in zip(chunk, spans, strict=True))
    finally:
        _FORKED.clear()
