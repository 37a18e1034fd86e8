"""PII that a paste dressed in other characters is still PII: the real scrubber reads the
text's NFKC view, replaces exactly the characters it came from, and keeps every other
character of the text as it was. The residual check does not depend on the scrubber's
rules; labels and slices are scrubbed like text; rows in scripts the detector does not
cover are refused, dropped or kept by policy, never passed silently."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from tasks.curation.expectations import residual_pii_kinds
from thaw.config import PiiConfig, ThawConfig
from thaw.errors import UserError
from thaw.pii.detector import PiiDetector, PiiSecret, pseudonym, scrub_texts

pytestmark = pytest.mark.integration
SECRET = PiiSecret(b"typography", "test")
PASTED = {
    "card 4111\u00a01111\u00a01111\u00a01111 please": "CREDIT_CARD",
    "card 4111.1111.1111.1111 please": "CREDIT_CARD",
    "card 4111\u00ad1111\u00ad1111\u00ad1111 please": "CREDIT_CARD",
    "card 4111\u200b1111\u200b1111\u200b1111 please": "CREDIT_CARD",
    "mail ａｎａ．ｌｉｍａ＠ｅｘａｍｐｌｅ．ｃｏｍ today": "EMAIL_ADDRESS",
    "mail ana.lima\u200b@example.com today": "EMAIL_ADDRESS",
    "account 123456789 is locked": "LONG_NUMBER",
    "use https://bob:hunter2@files.example.com/x now": "URL",
}


@pytest.fixture(scope="module")
def detector():
    return PiiDetector(PiiConfig())


def test_pasted_typography_hides_nothing_and_the_rest_of_the_text_keeps_its_characters(detector):
    texts = list(PASTED)
    out = list(scrub_texts(texts, detector, SECRET))
    for text, scrubbed, entity in zip(texts, out, PASTED.values(), strict=True):
        assert f"<{entity}" in scrubbed and scrubbed.endswith(text.split()[-1]), (text, scrubbed)
        assert not any(d in scrubbed for d in ("4111", "ana", "lima", "123456789", "hunter2")), scrubbed
    # one address, three spellings: one pseudonym
    mails = ["ana.lima@example.com", "ａｎａ．ｌｉｍａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ana.lima\u200b@example.com"]
    assert {pseudonym(SECRET, "EMAIL_ADDRESS", m) for m in mails} == {out[4].split()[1]}
    kept = "a café crème, naïve ﬁle\u00a0— ok"  # no PII: every character stays, ligature and no-break space too
    assert list(scrub_texts([kept, "Yesterday Ma\u00adria Gonzalez called."], detector, SECRET))[0] == kept
    assert "Gonzalez" not in list(scrub_texts(["Yesterday Ma\u00adria Gonzalez called."], detector, SECRET))[0]


def test_the_residual_check_catches_what_a_scrubber_without_its_rules_lets_through():
    bare = PiiDetector(PiiConfig(disabled_recognizers=("presidio_patterns", "structured", "shapes", "urls")))
    out = list(scrub_texts(list(PASTED)[:7], bare, SECRET))
    assert [residual_pii_kinds(t) for t in out] == ["CREDIT_CARD"] * 4 + ["EMAIL"] * 2 + ["NUMBER"]


def _curate(workspace, monkeypatch, rows, pii, **data):
    from tasks.curation.curate import curate_dataset

    monkeypatch.setenv("THAW_PII_SECRET", "a-test-secret-long-enough")
    train = workspace / "data" / "tickets.csv"
    train.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(train, index=False)
    cfg = ThawConfig.model_validate(
        {
            "workspace": str(workspace),
            "data": {
                "train": str(train),
                "text_column": "message",
                "label_column": "intent",
                "id_column": "ticket",
                "slice_column": "channel",
                **data,
            },
            "curation": {"pii": pii, "expectations": {"min_rows": 10}},
        }
    )
    return train, curate_dataset.fn(cfg, workspace / "run")


def _rows():
    words = "parcel invoice password browser courier voucher screen tablet laptop receipt warranty locker".split()
    rows = []
    for i in range(40):
        intent = "refund" if i % 2 else "vip +44 20 7946 0958"  # a phone number pasted into a label
        text = f"{intent.split()[0]} {' '.join(random.Random(i).sample(words, 8))}"
        channel = "mail ana@example.com" if i % 5 == 0 else "web"
        rows.append({"ticket": f"T-{i}", "message": text, "intent": intent, "channel": channel})
    rows[3]["message"] = "退款 请联系 张伟"
    rows[17]["message"] = "Меня зовут Иван, refund please"
    return rows


def test_rows_in_uncovered_scripts_are_refused_by_row_and_nothing_is_written(workspace, monkeypatch):
    with pytest.raises(UserError) as refused:
        _curate(workspace, monkeypatch, _rows(), {})
    message = str(refused.value)
    assert "tickets.csv: column 'message', rows 4, 18:" in message and "(Cyrillic 1, Han 1;" in message
    assert "\n" not in message and "张伟" not in message and "Иван" not in message
    assert not (workspace / "run" / "curated").exists()


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_rows_in_uncovered_scripts_are_dropped_or_kept_with_a_warning_and_counted(workspace, monkeypatch, policy):
    _, curated = _curate(workspace, monkeypatch, _rows(), {"uncovered_scripts": policy})
    report = json.loads(curated.report_path.read_text(encoding="utf-8"))
    assert report["notes"]["uncovered_scripts"] == {
        "train": {"rows": 2, "scripts": {"Han": 1, "Cyrillic": 1}, "policy": policy}
    }
    scripts = next(s for s in report["stages"] if s["stage"] == "train:scripts")
    assert scripts["removed"] == ({"uncovered_script": 2} if policy == "drop" else {})
    assert report["accounting"]["balanced"]
    markdown = curated.report_path.with_name("curation_report.md").read_text(encoding="utf-8")
    assert ("**warning**" in markdown) == (policy == "keep")


def test_labels_and_slices_are_scrubbed_like_text_and_keep_one_spelling(workspace, monkeypatch):
    rows = [r for i, r in enumerate(_rows()) if i not in (3, 17)]
    _, curated = _curate(workspace, monkeypatch, rows, {})
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in curated.files.values()]
    labels = {v for f in frames for v in f["label"]}
    slices = {v for f in frames for v in f["slice"]}
    assert len(labels) == 2 and "refund" in labels and all("7946" not in v for v in labels)
    assert slices == {"web", next(s for s in slices if s.startswith("mail <EMAIL_ADDRESS_"))}
    notes = json.loads(curated.report_path.read_text(encoding="utf-8"))["notes"]
    assert notes["labels_scrubbed"] == {"train": 20} and notes["slices_scrubbed"] == {"train": 8}


def test_texts_cut_for_length_are_cut_after_scrubbing_and_named_by_row(workspace, monkeypatch):
    rows = [r for i, r in enumerate(_rows()) if i not in (3, 17)]
    for i in (4, 9):  # data rows 5 and 10: a card number that the cut would halve
        rows[i]["message"] += " and more words here " * 3 + "card 4111 1111 1111 1111 thanks"
    _, curated = _curate(workspace, monkeypatch, rows, {}, max_text_chars=110)
    notes = json.loads(curated.report_path.read_text(encoding="utf-8"))["notes"]
    assert notes["truncated_rows"] == {"train": [5, 10]}
    texts = [t for p in curated.files.values() for t in pd.read_csv(p, dtype=str)["text"]]
    assert max(map(len, texts)) <= 110 and not any("4111" in t for t in texts)


def test_labels_that_differ_only_in_case_stay_classes_and_are_named_with_a_warning(workspace, monkeypatch, caplog):
    rows = [r for i, r in enumerate(_rows()) if i not in (3, 17)]
    for i in (6, 12, 20):  # data rows 7, 13, 21
        rows[i]["intent"] = "vip\u00a0+44 20 7946 0958".upper()  # a careless paste: other case, a no-break space
    rows[9]["intent"] = "Refund"  # data row 10
    with caplog.at_level("WARNING", logger="tasks.curation.curate"):
        train, curated = _curate(workspace, monkeypatch, rows, {})
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in curated.files.values()]
    assert len({v for f in frames for v in f["label"]}) == 4  # case may be meant: nothing is merged
    groups = json.loads(curated.report_path.read_text(encoding="utf-8"))["notes"]["label_case_variants"]
    assert [list(g) == sorted(g) for g in groups] == [True, True]
    refund = next(g for g in groups if "refund" in g)
    assert refund["Refund"] == {"rows": 1, "first": f"{train} row 10"} and refund["refund"]["first"] == f"{train} row 2"
    (vip,) = [g for g in groups if g is not refund]
    assert sorted(s["rows"] for s in vip.values())[0] == 3  # rows after the exact duplicates are dropped
    (warning,) = [r.getMessage() for r in caplog.records if "differ only in case" in r.getMessage()]
    assert "column 'intent':" in warning and "'Refund' (1 rows, first at" in warning and "\n" not in warning
    assert "7946" not in warning  # labels are scrubbed before they are named
    markdown = curated.report_path.with_name("curation_report.md").read_text(encoding="utf-8")
    assert markdown.count("**warning**: labels that differ only in case") == 2
    assert "labels given one spelling (whitespace, Unicode composition): train 3 rows" in markdown
