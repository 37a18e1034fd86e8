"""The text a model sees. Curated splits keep keyed pseudonyms (``<PERSON_8b1531>``) for
audit and deduplication; the model's input replaces each with its entity type
(``<PERSON>``), in training and in serving, so the key never reads as vocabulary and
served text (scrubbed the same way) looks like training text. Also the words a domain
measure counts: letters only, placeholders, punctuation and numbers left out."""

from __future__ import annotations

import re

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


def domain_words(text: str) -> list[str]:
    """The words of ``text`` (casefolded, letters of any script, inner apostrophes kept),
    without placeholders, punctuation or numbers."""
    return WORD.findall(PLACEHOLDER.sub(" ", text).casefold())


_LABEL_PARTS = re.compile(r"[\s_\-./:]+|(?<=[a-z])(?=[A-Z])")


def label_words(label: str) -> str | None:
    """A label as the words it is made of (``book_flight``, ``book-flight`` and
    ``BookFlight`` -> ``book flight``), or None when it does not read as words: a part
    with a digit or a sign (``LABEL_0``, ``4``, ``A12``), or no part of two letters."""
    parts = [part for part in _LABEL_PARTS.split(label.strip()) if part]
    if not parts or not all(part.isalpha() for part in parts) or max(len(p) for p in parts) < 2:
        return None
    return " ".join(parts).casefold()
