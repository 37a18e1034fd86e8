"""Shared fixtures: a tiny random encoder, a git+DVC workspace, a Prefect harness."""

from __future__ import annotations

import os
import string
import subprocess
from pathlib import Path

import pytest

from thaw.offline import apply_offline_environment

apply_offline_environment()
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker (the directory under tests/ it lives in)."""
    root = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "refund card lost password reset order delivery cancel subscription address payment app "
    "please my the i a to is was it not help account change block stolen where when new"
).split()


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer BERT (hidden 32) with its own small WordPiece vocabulary, seeded."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-encoder")
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIALS + WORDS + chars + [f"##{c}" for c in chars]
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    assert tokenizer.tokenize("refund my") == ["refund", "my"]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    return directory


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty git repository to run thaw in (DVC is initialised by thaw itself)."""
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@example.com")
    _git(root, "config", "user.name", "thaw test")
    (root / ".gitignore").write_text(".thaw/\n.dvcstore/\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness: a temporary database and API for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
