"""An external labelled PII dev set, and how PII removal is scored on it.

The sentences come from a third party: ``presidio-evaluator``'s ``PresidioSentenceFaker``
(Microsoft, MIT licence), which fills its own 200-odd templates (support messages,
letters and address blocks, forms, chat lines, news sentences) with Faker values and
records the true span of every value. Nothing here comes from thaw's demo generator.

Templates are split by a hash of the template text into a *development* half, which
may be looked at while working on the scrubber, and a *held-out* half, which is only
scored: a method tuned to the sentence shapes of the first half shows it on the second.

Scoring (per labelled span): a span is *removed* when no character of it survives
untouched, i.e. the value does not appear verbatim where it stood (a partial hit breaks
the verbatim value and counts as removed; a miss is a leak); *wholly* removed, the
stricter figure, when every character of it was replaced. *Over-scrubbing* is the
share of whitespace tokens outside every labelled span that a detection touched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

# presidio-evaluator's entity types -> what thaw calls them; these are the spans thaw
# scrubs by default. The rest (DATE_TIME, ORGANIZATION, NRP, AGE, TITLE, driver's
# licences) are left in by default and reported apart.
IN_SCOPE = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",
    "GPE": "LOCATION",
    "ZIP_CODE": "ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "DOMAIN_NAME": "URL",
}
STRUCTURED = ("CREDIT_CARD", "PHONE_NUMBER", "EMAIL_ADDRESS", "IBAN_CODE", "US_SSN", "IP_ADDRESS")
HALVES = ("development", "held-out")


@dataclass(frozen=True)
class LabelledText:
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, presidio-evaluator entity type)
    half: str


def _half(template: str) -> str:
    return HALVES[hashlib.sha256(template.encode()).digest()[0] % 2]


def build_devset(rows: int = 3000, seed: int = 20261124) -> list[LabelledText]:
    """``rows`` labelled sentences from presidio-evaluator's generator (seeded, offline)."""
    logging.getLogger("presidio-evaluator").setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import warnings

    from presidio_evaluator.data_generator import PresidioSentenceFaker

    # The generator seeds its random sources only after it has built its table of people,
    # whose full names draw middle initials from the module-level ``random``: seeded here
    # too, every run gets the same rows (before, names differed between runs, and so did
    # the figures), but for timestamps Faker draws back from the clock (out of scope:
    # thaw leaves DATE_TIME in). The caller's random state is put back afterwards.
    state = random.getstate()
    random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Can't download hospitals data": it falls back to its own list
            faker = PresidioSentenceFaker(locale="en_US", lower_case_ratio=0.05, random_seed=seed)
        templates = faker._sentence_templates  # no public accessor; the sample records only the index
        samples = faker.generate_new_fake_sentences(rows)
    finally:
        random.setstate(state)
    out = []
    for sample in samples:
        spans = tuple(sorted((s.start_position, s.end_position, s.entity_type) for s in sample.spans))
        out.append(LabelledText(sample.full_text, spans, _half(templates[sample.template_id])))
    return out


_TOKEN = re.compile(r"\S+")


def score(samples: Sequence[LabelledText], detected: Sequence[Sequence[tuple[int, int]]]) -> dict:
    """Per entity type: labelled spans and the share removed; overall in-scope and
    structured shares; over-scrubbing of tokens outside all labelled spans."""
    total, removed, whole = Counter(), Counter(), Counter()
    outside, touched = 0, 0
    for sample, found in zip(samples, detected, strict=True):
        covered = _coverage(len(sample.text), found)
        for start, end, kind in sample.spans:
            total[kind] += 1
            removed[kind] += any(covered[start:end])
            whole[kind] += all(covered[start:end])
        labelled = _coverage(len(sample.text), [(s, e) for s, e, _ in sample.spans])
        for token in _TOKEN.finditer(sample.text):
            if not any(labelled[token.start() : token.end()]):
                outside += 1
                touched += any(covered[token.start() : token.end()])
    per_type = {
        kind: {"spans": total[kind], "removed": removed[kind] / total[kind], "wholly": whole[kind] / total[kind]}
        for kind in sorted(total)
    }
    in_scope = [k for k in total if k in IN_SCOPE]
    structured = [k for k in total if k in STRUCTURED]
    return {
        "per_type": per_type,
        "in_scope": sum(removed[k] for k in in_scope) / max(1, sum(total[k] for k in in_scope)),
        "structured": sum(removed[k] for k in structured) / max(1, sum(total[k] for k in structured)),
        "over_scrubbing": touched / max(1, outside),
        "tokens_outside_spans": outside,
    }


def _coverage(length: int, spans) -> list[bool]:
    covered = [False] * length
    for start, end in spans:
        for i in range(max(0, start), min(length, end)):
            covered[i] = True
    return covered


def by_half(samples: Sequence[LabelledText]) -> dict[str, list[int]]:
    """Indices of the samples in each half."""
    out = defaultdict(list)
    for i, s in enumerate(samples):
        out[s.half].append(i)
    return dict(out)
