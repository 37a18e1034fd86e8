"""PII by its shape alone: what no scrubbed text may still hold, however it was missed.

``shape_spans`` finds, in a detection view (``thaw.pii.view``):

- ``CREDIT_CARD``: a Luhn-valid run of 12 to 19 digits in groups of 3 to 8 with anything
  but letters, digits and list or clock punctuation between them (up to three
  characters): 4-4-4-4, Amex's 4-6-5, spaces, dots, slashes, or none;
- ``LONG_NUMBER``: any run of 9 or more digits (account, national id and phone numbers
  typed without separators, in any script's digits);
- ``EMAIL_ADDRESS``: anything shaped like one, in any script: no spaces, one ``@``, a
  dot and a word of two or more letters after it;
- ``PHONE_NUMBER``: a number in international form, ``+`` or ``00`` and 8 to 15 digits
  in groups (national layouts need context to tell them from other numbers: the
  scrubber's phone rule reads it);
- ``URL``: a URL carrying credentials: ``user@`` or ``user:password@`` after a scheme,
  or a query parameter named like a secret (``token``, ``key``, ``sig``, ``password``...).

These are deliberately blunt and independent of every recognizer: the scrubber runs them
as its last rule (``shapes``), and the residual-PII expectation runs them again on the
scrubbed text, so switching a recognizer off, a recognizer's miss, or a mapping fault
between view and text fails the run instead of reaching training. Placeholders thaw
wrote (``<PERSON_1a2b3c>``) are not shapes. Every pattern is linear in the text.
"""

from __future__ import annotations

import regex

from thaw.checksums import luhn_ok
from thaw.pii.spans import Span

SHAPE_ENTITIES = frozenset({"CREDIT_CARD", "LONG_NUMBER", "EMAIL_ADDRESS", "PHONE_NUMBER", "URL"})

# Groups of 3-8 digits (two groups of 4 join where a soft hyphen was) with up to three
# separating characters; "2024-01-01 12:30" and "1, 2, 3" are not one run (':' ',' ';' end it).
_DIGIT_GROUPS = regex.compile(r"(?<!\d)\d{3,8}(?:[^\p{L}\p{N}:,;\n]{1,3}\d{3,8}){1,5}(?!\d)")
_LONG_NUMBER = regex.compile(r"\d{9,}")
# An address is found from each '@' outwards, each side bounded (64 characters before,
# as RFC 5321 allows a local part; 8 labels of 63 after), so a long run without a
# finished address costs a bounded scan per '@', never a rescan per character.
_LOCAL = "[^\\s@<>()\\[\\]{}\"',;:]"
_LOCAL_BEFORE = regex.compile(rf"{_LOCAL}{{1,64}}", regex.REVERSE)
_DOMAIN_AFTER = regex.compile(r"(?:[^\s@<>()\[\]{}\"',;:.]{1,63}\.){1,8}\p{L}{2,63}(?!\p{L})")
_INTERNATIONAL_PHONE = regex.compile(r"(?<!\+)(?:\+|00)\d{1,4}(?:[ .\-/]?\(?\d{1,5}\)?){1,6}(?!\d)")
_URL_USER = regex.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,15}://[^\s/?#@]{1,256}@")
_URL_SECRET = regex.compile(
    r"(?i)[?&](?:access_?token|token|api_?key|apikey|key|secret|password|passwd|pwd|sig|signature|auth|"
    r"x-amz-signature|x-amz-credential|sas)=[^\s&#]{3,}"
)
HINT = regex.compile(r"[\d@=]")  # no shape without one of these
_DIGIT = regex.compile(r"\d")
# thaw's own placeholders: six hex digits that are no one's number.
PLACEHOLDER = regex.compile(r"<[A-Z][A-Z_]{1,40}_[0-9a-f]{6}>")


def without_placeholders(text: str, fill: str = " ") -> str:
    """``text`` with thaw's placeholders blanked to ``fill`` (same length, same offsets):
    spaces end every shape, so a placeholder beside a dot or digits makes none."""
    if "<" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: fill * len(m.group()), text)


def card_shapes(text: str) -> list[Span]:
    """Luhn-valid runs of 12-19 digits, whatever separates their groups."""
    found = []
    for m in _DIGIT_GROUPS.finditer(text):
        digits = "".join(ch for ch in m.group() if ch.isdigit())
        if 12 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(Span(m.start(), m.end(), "CREDIT_CARD"))
    for m in _LONG_NUMBER.finditer(text):  # a card typed without separators
        if 12 <= len(m.group()) <= 19 and luhn_ok(m.group()):
            found.append(Span(m.start(), m.end(), "CREDIT_CARD"))
    return found


def email_shapes(text: str) -> list[Span]:
    """Anything shaped like an e-mail address, found from each '@'."""
    found = []
    at = text.find("@")
    while at >= 0:
        local = _LOCAL_BEFORE.match(text, max(0, at - 64), at)  # reversed: the run ending at '@'
        domain = _DOMAIN_AFTER.match(text, at + 1) if local is not None else None
        if local is not None and domain is not None:
            found.append(Span(local.start(), domain.end(), "EMAIL_ADDRESS"))
        at = text.find("@", at + 1)
    return found


def shape_spans(text: str) -> list[Span]:
    """Every shape in ``text`` (a detection view), as possibly overlapping spans."""
    text = without_placeholders(text)
    spans: list[Span] = []
    if _DIGIT.search(text):
        spans += card_shapes(text)
        spans += [Span(m.start(), m.end(), "LONG_NUMBER") for m in _LONG_NUMBER.finditer(text)]
        spans += [
            Span(m.start(), m.end(), "PHONE_NUMBER")
            for m in _INTERNATIONAL_PHONE.finditer(text)
            if 8 <= sum(ch.isdigit() for ch in m.group()) - m.group().startswith("00") * 2 <= 15
        ]
    if "@" in text:
        spans += email_shapes(text)
    if "://" in text:
        spans += [Span(m.start(), m.end(), "URL") for m in _URL_USER.finditer(text)]
    if "=" in text:
        spans += [Span(m.start(), m.end(), "URL") for m in _URL_SECRET.finditer(text)]
    return spans
