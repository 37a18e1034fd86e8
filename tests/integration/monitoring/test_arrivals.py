"""New rows for the drift monitor pass the checks curation's rows pass: scrubbed texts and
ids, and the residual-PII check, which names rows by position and never shows them."""

from __future__ import annotations

import pytest

from thaw.config import ThawConfig
from thaw.datasets import ColumnMap
from thaw.errors import UserError

pytestmark = pytest.mark.integration


def test_arrivals_are_scrubbed_and_refused_when_pii_is_left(tmp_path, monkeypatch):
    from tasks.monitoring.drift import read_arrivals

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret")
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    columns = ColumnMap(text="text", label=None, id="id")
    clean = tmp_path / "new.csv"
    clean.write_text("id,text\nana@example.com,call Ana Lima on +44 20 7946 0958\nT-2,where is my parcel\n")
    arrivals = read_arrivals.fn(cfg, clean, columns, tmp_path / "run")
    kept = arrivals.scrubbed.read_text(encoding="utf-8")
    assert "example.com" not in kept and "7946" not in kept and "Ana" not in kept and "T-2" in kept
    pasted = tmp_path / "pasted.csv"
    pasted.write_text("id,text\n1,fine\n2,my card is 4111 - 1111 - 1111 - 1111 ok\n", encoding="utf-8")
    assert "<CREDIT_CARD_" in read_arrivals.fn(cfg, pasted, columns, tmp_path / "run2").scrubbed.read_text()
    # a scrubber whose card rules are off lets it through: the residual check does not
    rules_off = {"disabled_recognizers": ["presidio_patterns", "structured", "shapes"]}
    weaker = ThawConfig.model_validate({"workspace": str(tmp_path), "curation": {"pii": rules_off}})
    with pytest.raises(UserError) as err:
        read_arrivals.fn(weaker, pasted, columns, tmp_path / "run3")
    assert "1 rows still hold PII after scrubbing (CREDIT_CARD; rows 2)" in str(err.value)
    assert "4111" not in str(err.value) and not (tmp_path / "run3" / "arrivals.csv").exists()
    other = tmp_path / "other.csv"
    other.write_text("id,text\n1,fine\n2,张伟 退款\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"other.csv: column 'text', rows 2: letters of scripts .*\(Han 1;"):
        read_arrivals.fn(cfg, other, columns, tmp_path / "run4")


@pytest.mark.parametrize("policy", ["truncate", "reject"])
def test_arrivals_are_held_to_the_length_training_rows_were_held_to(tmp_path, monkeypatch, caplog, policy):
    """Curation cut every scrubbed text to data.max_text_chars (or refused longer ones), so
    the training rows hold no word past it. Arrivals compared whole would bring a mail's
    tail as vocabulary the training rows never had the room for; a 100,000-character
    field is held to the same length (cut after scrubbing, as curation cuts)."""
    from tasks.monitoring.drift import _long_text_note, read_arrivals

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret")
    cfg = ThawConfig.model_validate(
        {"workspace": str(tmp_path), "data": {"max_text_chars": 60, "long_text_policy": policy}}
    )
    columns = ColumnMap(text="text", label=None, id="id")
    long_text = "where is my parcel it was due on monday " + "zebra quokka " * 7700  # 100,140 characters
    source = tmp_path / "new.csv"
    source.write_text(f"id,text\n1,short one\n2,{long_text}\n3,another short\n4,{long_text} again\n")
    with caplog.at_level("WARNING", logger="tasks.monitoring.drift"):
        arrivals = read_arrivals.fn(cfg, source, columns, tmp_path / "run")
    kept = arrivals.scrubbed.read_text(encoding="utf-8")
    assert arrivals.long_texts == 2 and "short one" in kept and "another short" in kept
    if policy == "truncate":
        assert arrivals.rows == 3 and arrivals.duplicates_dropped == 1  # rows 2 and 4 agree in their first 60
        assert "where is my parcel" in kept and max(map(len, kept.splitlines())) < 80
        assert arrivals.long_text_rule == "cut to 60 characters"
    else:
        assert arrivals.rows == 2 and "parcel" not in kept
        assert arrivals.long_text_rule == "left out (longer than 60 characters)"
    assert "column 'text', rows 2, 4:" in caplog.text
    # the report's first line says so
    note = _long_text_note({"long_texts": arrivals.long_texts, "long_text_rule": arrivals.long_text_rule})
    assert note == f"; 2 texts {arrivals.long_text_rule}, as in training"
    assert _long_text_note({"long_texts": 0}) == ""
