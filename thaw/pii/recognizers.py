"""PII recognizers: one class each, registered in the order they run.

A recognizer names the entities it finds, offers a cheap ``hint`` (a text without an '@'
holds no e-mail address), says whether it runs before spaCy's NER or after it (then it
sees NER's finds too), and ``find(text, found)`` returns its spans given what the
recognizers before it found. Presidio's ``RecognizerRegistry`` is the model: add one
with ``register_recognizer`` in your own module; switch any off with
``curation.pii.disabled_recognizers``. thaw's own, in order:

before NER: ``presidio_patterns`` (Presidio's pattern recognizers for the configured
entities but URLs), ``structured`` (cards by Luhn, IBANs, e-mails, phones), ``urls``
(Presidio's URL shapes, linear), ``shapes`` (what the
residual check refuses: cards with any separators, 9+ digit runs, e-mail shapes, URLs
with credentials), ``date_of_birth``,
``places``, ``person_cues``, ``addresses`` (streets, units, postal codes, address
blocks), ``name_echoes`` (other occurrences of a detected name);
after NER: ``postcodes_after_places``, ``name_echoes_after_ner``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import regex

from thaw.config import PiiConfig
from thaw.errors import UserError
from thaw.pii import addresses, rules, shapes
from thaw.pii.spans import Span


class Recognizer:
    """One kind of PII finder. Subclasses set ``name`` and ``entities`` and implement ``find``."""

    name: ClassVar[str]
    entities: ClassVar[frozenset[str]]
    after_ner: ClassVar[bool] = False

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg

    def hint(self, text: str) -> bool:
        """A cheap necessary condition: False means ``find`` would find nothing."""
        return True

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        """The spans of ``text`` this recognizer finds, given what was ``found`` before it."""
        raise NotImplementedError


_RECOGNIZERS: dict[str, type[Recognizer]] = {}


def register_recognizer(cls: type[Recognizer]) -> type[Recognizer]:
    """Add ``cls`` after the recognizers of its stage registered so far (usable as a decorator)."""
    if _RECOGNIZERS.get(cls.name, cls) is not cls:
        raise ValueError(f"a PII recognizer named {cls.name!r} is already registered")
    _RECOGNIZERS[cls.name] = cls
    return cls


def unregister_recognizer(name: str) -> None:
    """Remove a recognizer (for tests that register one of their own)."""
    _RECOGNIZERS.pop(name, None)


def recognizer_names() -> tuple[str, ...]:
    """Every registered recognizer, before-NER ones first, each stage in registration order."""
    return tuple(sorted(_RECOGNIZERS, key=lambda n: _RECOGNIZERS[n].after_ner))


def enabled_recognizers(cfg: PiiConfig) -> tuple[list[Recognizer], list[Recognizer]]:
    """(before NER, after NER): every registered recognizer not disabled in ``cfg``, built."""
    unknown = sorted(set(cfg.disabled_recognizers) - set(_RECOGNIZERS))
    if unknown:
        raise UserError(
            f"curation.pii.disabled_recognizers: unknown recognizer {unknown[0]!r}; "
            f"registered: {', '.join(recognizer_names())}"
        )
    built = [_RECOGNIZERS[n](cfg) for n in recognizer_names() if n not in cfg.disabled_recognizers]
    return [r for r in built if not r.after_ner], [r for r in built if r.after_ner]


# --- thaw's own -------------------------------------------------------------------------

# spaCy's labels -> Presidio's entity names
NER_LABELS = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "NORP": "NRP",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
# spaCy's NER finds these; Presidio's pattern recognizers are not asked for them.
NER_ENTITIES = frozenset(NER_LABELS.values())


@register_recognizer
class PresidioPatterns(Recognizer):
    """Presidio's predefined pattern recognizers for the configured entities (not its
    spaCy recognizer: thaw runs NER itself, batched), each only on texts its hint admits."""

    name = "presidio_patterns"
    entities = frozenset({"EMAIL_ADDRESS", "IP_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"})
    HINTS: ClassVar[dict[str, regex.Pattern]] = {
        "EMAIL_ADDRESS": regex.compile(r"@"),
        "IP_ADDRESS": regex.compile(r"\d\.\d|::|[0-9a-fA-F]:[0-9a-fA-F]"),
        "PHONE_NUMBER": regex.compile(r"(?:\d\D{0,3}){7}"),
        "CREDIT_CARD": regex.compile(r"(?:\d[\s-]?){12}"),
        "IBAN_CODE": regex.compile(r"(?i)[a-z]{2}\s?\d{2}"),
        "US_SSN": regex.compile(r"(?:\d[\s.-]?){9}"),
    }

    def __init__(self, cfg: PiiConfig) -> None:
        from presidio_analyzer import RecognizerRegistry

        super().__init__(cfg)
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"])
        self.by_entity = {
            e: [r for r in registry.recognizers if e in r.supported_entities and not _replaced(r)]
            for e in cfg.entities
            if e not in NER_ENTITIES
        }

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        spans, seen = [], set()
        for entity, recognizers in self.by_entity.items():
            hint = self.HINTS.get(entity)
            if hint is not None and not hint.search(text):
                continue
            for rec in recognizers:
                if id(rec) in seen:
                    continue
                seen.add(id(rec))
                asked = [e for e in self.by_entity if e in rec.supported_entities]
                for r in rec.analyze(text, asked, None) or []:
                    if r.score >= self.cfg.score_threshold:
                        spans.append(Span(r.start, r.end, r.entity_type))
        return spans


def _replaced(recognizer) -> bool:
    """Presidio's recognizers thaw runs its own way: the NLP-backed ones (thaw runs NER
    itself, batched) and the URL one (``urls``: the same shapes in linear time)."""
    names = ("SpacyRecognizer", "TransformersRecognizer", "StanzaRecognizer", "UrlRecognizer")
    return recognizer.__class__.__name__ in names


@register_recognizer
class Structured(Recognizer):
    """Card numbers (Luhn), IBANs (mod 97), e-mail addresses and phone numbers in any
    national layout (``rules.structured_spans``)."""

    name = "structured"
    entities = frozenset({"CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "PHONE_NUMBER"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.structured_spans(text)


@register_recognizer
class Urls(Recognizer):
    """Web addresses (``rules.url_spans``): Presidio's shapes, in time linear in the text."""

    name = "urls"
    entities = frozenset({"URL"})

    def hint(self, text: str) -> bool:
        return "URL" in self.cfg.entities and rules.URL_HINT.search(text) is not None

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.url_spans(text)


@register_recognizer
class Shapes(Recognizer):
    """PII by shape alone (``thaw.pii.shapes``): Luhn-valid card numbers with any
    separators, runs of 9+ digits, anything shaped like an e-mail address, URLs with
    credentials. The residual-PII check runs the same shapes on the scrubbed text."""

    name = "shapes"
    entities = shapes.SHAPE_ENTITIES

    def hint(self, text: str) -> bool:
        return shapes.HINT.search(text) is not None

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return shapes.shape_spans(text)


@register_recognizer
class DateOfBirth(Recognizer):
    """Full dates with a year."""

    name = "date_of_birth"
    entities = frozenset({"DATE_OF_BIRTH"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.date_of_birth_spans(text)


@register_recognizer
class Places(Recognizer):
    """Country and state names (ISO 3166) and places after a cue ("in", "from", "near")."""

    name = "places"
    entities = frozenset({"LOCATION"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.place_spans(text)


@register_recognizer
class PersonCues(Recognizer):
    """Names after cues ("my name is", "this is"), titles and sign-offs."""

    name = "person_cues"
    entities = frozenset({"PERSON"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.person_spans(text)


@register_recognizer
class Addresses(Recognizer):
    """Street lines, units, postal codes (after a cue, UK layout, or after a place found
    before it) and address blocks."""

    name = "addresses"
    entities = frozenset({"ADDRESS", "LOCATION", "PERSON"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return addresses.address_spans(text, [s for s in found if s.entity == "LOCATION"])


@register_recognizer
class NameEchoes(Recognizer):
    """Every other occurrence of a name found before it."""

    name = "name_echoes"
    entities = frozenset({"PERSON"})

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return rules.propagate_names(text, found)


@register_recognizer
class PostcodesAfterPlaces(Recognizer):
    """Postal codes right after a place NER found ("in Tallinn 12916")."""

    name = "postcodes_after_places"
    entities = frozenset({"ADDRESS"})
    after_ner = True

    def find(self, text: str, found: Sequence[Span]) -> list[Span]:
        return addresses.postcodes_after(text, [s for s in found if s.entity == "LOCATION"])


@register_recognizer
class NameEchoesAfterNer(NameEchoes):
    """Every other occurrence of a name NER found."""

    name = "name_echoes_after_ner"
    after_ner = True
