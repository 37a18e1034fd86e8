"""The PII key is input: one too short to resist guessing is refused where it was read,
since with the key anyone reading the curated splits could test names against their
pseudonyms."""

from __future__ import annotations

from pathlib import Path

import pytest

from thaw.config import PiiConfig
from thaw.errors import UserError
from thaw.pii.detector import MIN_KEY_BYTES, load_pii_secret, pseudonym

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("value", ["k", "secret", "changeme", "x" * (MIN_KEY_BYTES - 1)])
def test_a_short_key_in_the_environment_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("THAW_PII_SECRET", value)
    with pytest.raises(UserError, match=f"^THAW_PII_SECRET: the PII key is {len(value)} bytes; it needs at least 16"):
        load_pii_secret(PiiConfig())


@pytest.mark.parametrize("content", [b"", b"  \n", b"short-key\n"])
def test_an_empty_or_short_key_file_is_refused_naming_the_file(monkeypatch, tmp_path, content):
    # an empty file was an empty HMAC key: pseudonyms anyone could compute from a name
    monkeypatch.delenv("THAW_PII_SECRET", raising=False)
    path = tmp_path / "pii.key"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"^{path}: the PII key is {len(content.strip())} bytes"):
        load_pii_secret(PiiConfig(secret_file=path))


def test_a_key_of_sixteen_bytes_or_more_is_taken_from_either_place(monkeypatch, tmp_path):
    monkeypatch.setenv("THAW_PII_SECRET", "x" * MIN_KEY_BYTES)
    assert load_pii_secret(PiiConfig()).source == "env:THAW_PII_SECRET"
    monkeypatch.delenv("THAW_PII_SECRET")
    path = tmp_path / "pii.key"
    path.write_text("0123456789abcdef0123\n")
    secret = load_pii_secret(PiiConfig(secret_file=path))
    assert secret.key == b"0123456789abcdef0123" and secret.source == f"file:{path}"
    assert pseudonym(secret, "PERSON", "Ada") != pseudonym(load_pii_secret(PiiConfig()), "PERSON", "Ada")  # ephemeral


def test_the_example_environment_file_s_placeholder_is_refused(monkeypatch):
    example = (ROOT / "infra" / ".env.example").read_text(encoding="utf-8").splitlines()
    (placeholder,) = [line.split("=", 1)[1] for line in example if line.startswith("THAW_PII_SECRET=")]
    monkeypatch.setenv("THAW_PII_SECRET", placeholder)
    with pytest.raises(UserError, match="^THAW_PII_SECRET: the PII key is infra/.env.example's placeholder"):
        load_pii_secret(PiiConfig())


def test_a_key_is_the_same_key_with_the_whitespace_a_paste_adds_in_either_place(monkeypatch, tmp_path):
    path = tmp_path / "pii.key"
    path.write_text("a-team-key-of-some-length\n")
    monkeypatch.delenv("THAW_PII_SECRET", raising=False)
    from_file = load_pii_secret(PiiConfig(secret_file=path))
    monkeypatch.setenv("THAW_PII_SECRET", " a-team-key-of-some-length\n")
    assert load_pii_secret(PiiConfig()).key == from_file.key
    monkeypatch.setenv("THAW_PII_SECRET", " \n")  # set, to nothing but whitespace: refused, not ephemeral
    with pytest.raises(UserError, match="^THAW_PII_SECRET: the PII key is 0 bytes"):
        load_pii_secret(PiiConfig())
