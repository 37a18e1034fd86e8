"""New rows for the drift monitor pass the checks curation's rows pass: scrubbed texts and
ids, and the residual-PII check, which names rows by their number in the file and never
shows them."""

from __future__ import annotations

import pytest

from thaw.config import ThawConfig
from thaw.datasets import ColumnMap
from thaw.errors import UserError

pytestmark = pytest.mark.integration


def test_arrivals_are_scrubbed_and_refused_when_pii_is_left(tmp_path, monkeypatch):
    from tasks.monitoring.drift import read_arrivals

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
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

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
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


def test_every_row_the_monitor_names_is_numbered_as_in_the_file(tmp_path, monkeypatch):
    """Rows are left out on the way (another script under `drop`, exact repeats): a row
    named after that is still named by its data row number in the file, never by where it
    fell among the rows kept (the residual-PII check and the retraining id check named
    positions, and an empty label was named by its CSV line)."""
    import pandas as pd

    from tasks.monitoring.drift import Reference, read_arrivals, trigger_retraining
    from thaw.datasets import write_table
    from thaw.modeling import BackboneRef

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
    pii = {"uncovered_scripts": "drop", "disabled_recognizers": ["presidio_patterns", "structured", "shapes"]}
    weaker = ThawConfig.model_validate({"workspace": str(tmp_path), "curation": {"pii": pii}})
    unlabelled = ColumnMap(text="text", label=None, id="id")
    pasted = tmp_path / "pasted.csv"
    pasted.write_text("id,text\n1,张伟 退款\n2,fine\n3,my card is 4111 - 1111 - 1111 - 1111 ok\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"1 rows still hold PII after scrubbing \(CREDIT_CARD; rows 3\)"):
        read_arrivals.fn(weaker, pasted, unlabelled, tmp_path / "run1")

    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    labelled = ColumnMap(text="text", label="label", id="id")
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text,label\nn1,where is my parcel,delivery\nn2,refund please,\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"empty.csv: row 2 has an empty 'label'"):
        read_arrivals.fn(cfg, empty, labelled, tmp_path / "run2")

    reused = tmp_path / "reused.csv"
    reused.write_text("id,text,label\nn1,hello there,greet\nn2,hello there,greet\nold-7,bye,leave\n", encoding="utf-8")
    arrivals = read_arrivals.fn(cfg, reused, labelled, tmp_path / "run3")
    assert arrivals.rows == 2 and arrivals.duplicates_dropped == 1
    split = write_table(pd.DataFrame({"id": ["old-7"], "text": ["see you"], "label": ["leave"]}), tmp_path / "t.csv")
    backbone = BackboneRef("tiny", "path:/nowhere", "0" * 64)
    reference = Reference("tickets", "3", {"train": split}, {}, backbone, None, ("train",))
    with pytest.raises(UserError, match=r"reused.csv: 1 rows have ids already used by tickets v3's data \(rows 3\)"):
        trigger_retraining.fn(cfg, reference, arrivals, None)
