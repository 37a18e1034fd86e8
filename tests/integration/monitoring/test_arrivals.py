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
