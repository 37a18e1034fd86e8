"""The scrubber's per-text plan must never skip a recognizer that could match."""

import pytest

from tasks.pii import EntityPlanner, PiiSecret, Span, choose_spans, pseudonym
from thaw.config import PiiConfig

PLANNER = EntityPlanner(PiiConfig(), {"the", "my", "please", "it"})


@pytest.mark.parametrize(
    "text,entity",
    [
        ("mail jo@example.org", "EMAIL_ADDRESS"),
        ("call +1 212-555-0199", "PHONE_NUMBER"),
        ("call (212) 555 0199", "PHONE_NUMBER"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD"),
        ("iban de89 3704 0044 0532 0130 00", "IBAN_CODE"),
        ("ssn 078-05-1120", "US_SSN"),
        ("I live at 12 Baker Street", "ADDRESS"),
        ("born 03/04/1985", "DATE_OF_BIRTH"),
        ("see www.example.com", "URL"),
        ("from 10.0.0.1", "IP_ADDRESS"),
    ],
)
def test_plan_keeps_the_recognizer_that_can_match(text, entity):
    assert entity in PLANNER.entities_for(text, ner=False)


def test_plan_skips_what_cannot_match():
    assert PLANNER.entities_for("please cancel my plan", ner=False) == []


@pytest.mark.parametrize(
    "text,ner",
    [
        ("Thanks, Maria Garcia", True),
        ("please call me, it is urgent. - Omar", True),
        ("Hello, where is my order", False),
        ("My card was declined", False),
    ],
)
def test_ner_runs_only_where_a_name_could_be(text, ner):
    assert PLANNER.needs_ner(text) is ner


def test_pseudonyms_are_keyed_and_consistent():
    a, b = PiiSecret(b"k1", "test"), PiiSecret(b"k2", "test")
    assert pseudonym(a, "PERSON", "Maria  Garcia") == pseudonym(a, "PERSON", "maria garcia")
    assert pseudonym(a, "PERSON", "Maria Garcia") != pseudonym(b, "PERSON", "Maria Garcia")
    assert pseudonym(a, "PERSON", "Maria Garcia").startswith("<PERSON_")
    assert "k1" not in repr(a)


def test_overlapping_spans_merge_so_nothing_is_left_behind():
    # "12 Park Avenue, Springfield": the city (LOCATION, high score) inside the address
    spans = choose_spans([Span(0, 27, "ADDRESS", 0.7), Span(16, 27, "LOCATION", 0.85), Span(30, 40, "EMAIL", 1.0)])
    assert [(s.entity, s.start, s.end) for s in spans] == [("ADDRESS", 0, 27), ("EMAIL", 30, 40)]
    chained = choose_spans([Span(0, 10, "PERSON", 0.6), Span(5, 20, "ADDRESS", 0.7)])
    assert [(s.entity, s.start, s.end) for s in chained] == [("ADDRESS", 0, 20)]
