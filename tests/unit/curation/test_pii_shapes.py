"""What detection reads (the NFKC view and its map back), the shapes no scrubbed text may
keep, and the rows in scripts the detector does not cover: pure functions, no model."""

from __future__ import annotations

import pytest

from tasks.curation.expectations import carried_residual_pii, residual_pii_kinds
from thaw.config import PiiConfig
from thaw.pii.scripts import uncovered_rows
from thaw.pii.shapes import shape_spans
from thaw.pii.spans import Span
from thaw.pii.view import detection_view, normalised_value


def _found(text: str) -> list[tuple[str, str]]:
    view = detection_view(text)
    return [(text[s.start : s.end], s.entity) for s in view.spans_to_original(shape_spans(view.text))]


def test_the_view_reads_one_spelling_and_maps_back_to_the_text_s_own_characters():
    text = "mail ｊｏ＠ｅｘａｍｐｌｅ．ｃｏｍ or jo\u200b@example.com; card 4111\u00a01111\u00ad1111 1111, ﬁne"
    view = detection_view(text)
    assert "jo@example.com or jo@example.com" in view.text and "4111 11111111 1111" in view.text
    assert view.text.endswith("fine")
    found = _found(text)
    assert ("ｊｏ＠ｅｘａｍｐｌｅ．ｃｏｍ", "EMAIL_ADDRESS") in found and (
        "jo\u200b@example.com",
        "EMAIL_ADDRESS",
    ) in found
    assert ("4111\u00a01111\u00ad1111 1111", "CREDIT_CARD") in found
    assert detection_view("plain ascii").origin is None  # the common case costs nothing
    assert normalised_value("ＡＮＡ\u00a0Lima") == normalised_value("ana lima")  # one pseudonym for both
    assert detection_view("e\u0301 x").to_original(Span(0, 1, "X")) == Span(0, 2, "X")  # a grapheme stays whole


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("card 4111\u00a01111\u00a01111\u00a01111", "CREDIT_CARD"),
        ("card 4111.1111.1111.1111", "CREDIT_CARD"),
        ("card 4111/1111/1111/1111", "CREDIT_CARD"),
        ("maestro 5018 0000 0009", "CREDIT_CARD"),  # 12 digits, Luhn-valid
        ("account 123456789 locked", "LONG_NUMBER"),
        ("account ١٢٣٤٥٦٧٨٩ locked", "LONG_NUMBER"),  # Arabic-Indic digits
        ("write josé@correo.español.es", "EMAIL_ADDRESS"),
        ("write ana@example.com1990", "EMAIL_ADDRESS"),
        ("call +44 20 7946 0958", "PHONE_NUMBER"),
        ("call 0044 20 7946 0958", "PHONE_NUMBER"),
        ("at https://bob:hunter2@files.example.com/x", "URL"),
        ("at https://bob@files.example.com/x", "URL"),
        ("at https://files.example.com/x?token=abcdef123", "URL"),
    ],
)
def test_shapes_are_found_whatever_the_typography(text, entity):
    assert entity in {e for _, e in _found(text)}, text


@pytest.mark.parametrize(
    "text",
    [
        "at 2024-01-01 12:30:45 and 2023-12-31 23:59:59",
        ", ".join(str(i) for i in range(40)),
        "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6",
        "order 4111 1111 1111 1112 shipped",  # not Luhn-valid
        "version 1.2.3.4 of 2024/01/01, 12345678 rows",
        "pay 10@5.99 each, see me @ home.now",
        "see <PERSON_123456> 7890 1234 5678",  # a placeholder's hex digits are no one's number
        "https://example.com/x?page=2",
    ],
)
def test_ordinary_numbers_dates_and_placeholders_are_no_shapes(text):
    assert _found(text) == [], text


def test_the_residual_check_reads_the_view_and_every_carried_column():
    import pandas as pd

    assert residual_pii_kinds("card 4111\u200b1111\u200b1111\u200b1111") == "CREDIT_CARD"
    assert residual_pii_kinds("write ｊｏ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "EMAIL"
    assert residual_pii_kinds("ref 123456789") == "NUMBER"
    assert residual_pii_kinds("ref 123456789", ["EMAIL_ADDRESS"]) == ""  # numbers are not scrubbed then
    row = pd.Series({"id": "ana@example.com", "text": "hello", "label": "vip 123456789", "slice": "web"})
    assert carried_residual_pii(row, ("text", "id", "label", "slice"), ("EMAIL_ADDRESS", "LONG_NUMBER")) == (
        "id:EMAIL;label:NUMBER"
    )
    keyed = pd.Series({"id": "id-0123456789abcdef", "text": "hello"})  # thaw's own digest of an id
    assert carried_residual_pii(keyed, ("text", "id"), ("LONG_NUMBER",)) == ""


def test_rows_in_scripts_the_detector_does_not_cover_are_found_and_named_by_script():
    texts = ["plain English", "café crème", "電話 张伟", "Меня зовут Иван", "𝐁𝐨𝐥𝐝 Latin", "bigot /ˈbɪɡət/", "ok 😀"]
    rows, scripts = uncovered_rows(texts, ("Latin",))
    assert rows == [2, 3] and dict(scripts) == {"Han": 1, "Cyrillic": 1}
    assert uncovered_rows(texts, ("Latin", "Cyrillic", "Han"))[0] == []


def test_script_names_are_checked_when_the_config_is_read():
    assert PiiConfig(covered_scripts=["Latin", "Greek"]).covered_scripts == ("Latin", "Greek")
    with pytest.raises(ValueError, match="'Klingon' is not a Unicode script name"):
        PiiConfig(covered_scripts=["Klingon"])
    with pytest.raises(ValueError, match="is not a Unicode script name"):
        PiiConfig(covered_scripts=["Latin}|.*"])
