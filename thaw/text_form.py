"""The text a model sees. Curated splits keep keyed pseudonyms (``<PERSON_8b1531>``) for
audit and deduplication; the model's input replaces each with its entity type
(``<PERSON>``), in training and in serving, so the key never reads as vocabulary and
served text (scrubbed the same way) looks like training text. Realistic surrogates (one
name, one link... per type) in place of the types were measured lower at 10 per class
(``python -m bench.text_forms``: SpamAssassin 0.7918 against 0.8143, GoEmotions 0.1548
against 0.1564 with the plain recipe, five draws each). Also the words a domain
measure counts: letters only, placeholders, punctuation and numbers left out."""

from __future__ import annotations

import re
from collections.abc import Sequence

TEXT_FORM = "entity-types-v1"  # in cache keys: features and checkpoints made from this form
PSEUDONYM = re.compile(r"<([A-Z][A-Z_]*?)_[0-9a-f]{6}>")
# placeholders of any origin: thaw's pseudonyms and entity tokens, and masks such as
# GoEmotions' [NAME] or <URL>
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>|\[[A-Z][A-Z0-9_]*\]|" + PSEUDONYM.pattern)
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def normalise_pseudonyms(text: str) -> str:
    """``<PERSON_1a2b3c>`` -> ``<PERSON>``: the keyed part differs between PII keys and
    runs and carries nothing a model or a drift test should read."""
    return PSEUDONYM.sub(r"<\1>", text)


def model_text(text: str) -> str:
    """The form of ``text`` every rung trains on and the served model predicts on."""
    return normalise_pseudonyms(text)


def cut_scrubbed(text: str, limit: int) -> str:
    """The first ``limit`` characters of a scrubbed text (``data.max_text_chars``), ending
    before a pseudonym the cut would split: a partial ``<URL_5eaf`` would read as words
    to the model, and its key's digits are not those of the stand-in serving cuts. The
    one cut of curation, the drift monitor and the served model."""
    if len(text) <= limit:
        return text
    start = text.rfind("<", 0, limit)  # a pseudonym holds no other "<": the one the cut is in starts here
    split = PSEUDONYM.match(text, start) if start >= 0 else None
    return text[:start] if split and split.end() > limit else text[:limit]


def domain_words(text: str) -> list[str]:
    """The words of ``text`` (casefolded, letters of any script, inner apostrophes kept),
    without placeholders, punctuation or numbers."""
    return WORD.findall(PLACEHOLDER.sub(" ", text).casefold())


_LABEL_PARTS = re.compile(r"[\s_\-./:]+|(?<=[a-z])(?=[A-Z])")


def label_words(labels: Sequence[str]) -> dict[str, str]:
    """The labels that read as words, as those words: ``book_flight``, ``book-flight``
    and ``BookFlight`` -> "book flight", ``rollover_401k`` -> "rollover 401k". A label
    reads as words when its parts are letters and digits only and one of them is a word
    of two or more letters that not every label shares; so codes (``LABEL_3`` among
    ``LABEL_0``..., ``4``, ``A12``, ``w2``) are left out."""
    parts = {label: [part for part in _LABEL_PARTS.split(label.strip()) if part] for label in labels}
    folded = [{part.casefold() for part in split} for split in parts.values()]
    shared = set.intersection(*folded) if len(folded) > 1 else set()
    words = {}
    for label, split in parts.items():
        if not split or not all(part.isalnum() for part in split):
            continue
        if any(part.isalpha() and len(part) >= 2 and part.casefold() not in shared for part in split):
            words[label] = " ".join(split).casefold()
    return words
