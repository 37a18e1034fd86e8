"""What PII detection reads: a text's typography normalised, with a map back to the text.

A value is PII whatever characters a paste or a keyboard put in it: a card number with
no-break spaces, an e-mail address in full-width letters, a name broken by a soft hyphen.
``detection_view`` gives the detectors one spelling of each (Unicode NFKC, grapheme by
grapheme) and reads Unicode spaces and line separators as a plain space; format
characters (soft hyphen, zero-width space and joiners, word joiner, byte-order and
direction marks) are left out: they mark break opportunities or joins inside a word, and
sites put zero-width spaces inside long addresses and numbers so they wrap. Every
character of the view knows the characters of the text it came from, so spans found in
the view replace exactly those characters, and the stored text keeps its own characters
everywhere else.

A literal two-character ``\\n`` (text exported from JSON often keeps those) reads as a
line break. ASCII text without one is its own view, at no cost.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

from thaw.pii.rules import plain_view
from thaw.pii.spans import Span

_GRAPHEME = regex.compile(r"\X")
_SEPARATORS = frozenset("\u2028\u2029\x85")  # read as a space, beside the Zs category


@dataclass(frozen=True)
class TextView:
    """``text`` as detection reads it; ``origin[i]`` is the (start, end) in the original of
    the characters view character ``i`` came from (None: the view is the text)."""

    text: str
    origin: tuple[tuple[int, int], ...] | None = None

    def to_original(self, span: Span) -> Span | None:
        """``span`` of the view as a span of the original text (None if it is empty)."""
        if self.origin is None:
            return span
        if span.end <= span.start:
            return None
        return Span(self.origin[span.start][0], self.origin[span.end - 1][1], span.entity)

    def spans_to_original(self, spans) -> list[Span]:
        """Each of ``spans`` in the original text's characters, empty ones left out."""
        if self.origin is None:
            return list(spans)
        return [s for s in map(self.to_original, spans) if s is not None]


def _read(cluster: str) -> str:
    """One grapheme as detection reads it."""
    if len(cluster) == 1:
        if cluster in _SEPARATORS or unicodedata.category(cluster) == "Zs":
            return " "
        if unicodedata.category(cluster) == "Cf":
            return ""
    kept = "".join(ch for ch in cluster if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", kept)


def detection_view(text: str) -> TextView:
    """``text`` normalised for detection (see the module), with its map back."""
    plain = plain_view(text)  # same length: offsets still the text's
    if plain.isascii():
        return TextView(plain)
    chars: list[str] = []
    origin: list[tuple[int, int]] = []
    for m in _GRAPHEME.finditer(plain):
        cluster = m.group()
        read = cluster if cluster.isascii() else _read(cluster)
        chars.append(read)
        origin.extend([(m.start(), m.end())] * len(read))
    return TextView("".join(chars), tuple(origin))


def normalised_value(value: str) -> str:
    """A detected value as one spelling: its view, spaces collapsed, case folded (what a
    pseudonym is keyed on, so one value pasted two ways gets one pseudonym)."""
    return " ".join(detection_view(value).text.split()).casefold()
