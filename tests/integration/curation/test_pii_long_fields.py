"""Pasted fields that used to stall or crash the scrubber: a long run of numbers (the
address rules backtracked), a field of names (overlap checks were quadratic), and a text
longer than spaCy takes in one pass (E088)."""

from __future__ import annotations

import pytest

from thaw.config import PiiConfig
from thaw.pii import detector
from thaw.pii.masking import mask_texts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_twenty_thousand_characters_of_numbers_and_a_field_of_names_finish():
    numbers = ("1 " * 10_000).strip()
    names = "Ana Lima called. " * 6_000  # 102,000 characters that all need NER
    out = mask_texts([numbers, names, "ship to 214 Beach Road, Wageningen"], PiiConfig())
    assert len(out) == 3  # finished (before: not within 200 s); runs of digits may read as phone numbers
    assert "Ana Lima" not in out[1] and out[1].count("<PERSON>") == 6_000
    assert out[2] == "ship to <ADDRESS>, <LOCATION>"


def test_a_text_longer_than_one_ner_pass_is_read_in_pieces_at_spaces(monkeypatch):
    monkeypatch.setattr(detector, "NER_CHUNK", 1_000)  # the same as 1M-character fields, sooner
    text = "Yesterday Maria Gonzalez asked for a refund. " * 200
    pieces = detector.ner_chunks(text, 1_000)
    assert "".join(p for _, p in pieces) == text and all(text[o:].startswith(p) for o, p in pieces)
    assert all(p.endswith(" ") for _, p in pieces[:-1])  # cut at a space, never inside a name
    masked = mask_texts([text], PiiConfig())[0]
    assert "Maria" not in masked and "Gonzalez" not in masked and masked.count("<PERSON>") == 200
