"""How many tokens a backbone reads, as its own files state it, and a ``backbone.max_length``
past it refused before anything is embedded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thaw.config import BackboneConfig
from thaw.errors import UserError
from thaw.modeling import check_max_length, input_limit


def _backbone(root: Path, tokenizer: object = None, positions: object = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        (root / "tokenizer_config.json").write_text(json.dumps({"model_max_length": tokenizer}), encoding="utf-8")
    if positions is not None:
        (root / "config.json").write_text(json.dumps({"max_position_embeddings": positions}), encoding="utf-8")
    return root


def test_the_tokenizer_bound_comes_first_and_the_positions_stand_in_for_a_tokenizer_without_one(tmp_path):
    # RoBERTa-style: 514 positions, 512 usable, as its tokenizer says
    assert input_limit(_backbone(tmp_path / "roberta", tokenizer=512, positions=514)) == 512
    # a tokenizer saved without a bound carries transformers' VERY_LARGE_INTEGER
    assert input_limit(_backbone(tmp_path / "unbounded", tokenizer=int(1e30), positions=128)) == 128
    assert input_limit(_backbone(tmp_path / "positions-only", positions=256)) == 256


@pytest.mark.parametrize("value", ["512", True, -1, 0, 2.5, None, [512]])
def test_a_value_that_is_not_a_positive_integer_counts_as_not_stated(tmp_path, value):
    root = tmp_path / "b"
    root.mkdir()
    (root / "tokenizer_config.json").write_text(json.dumps({"model_max_length": value}), encoding="utf-8")
    (root / "config.json").write_text(json.dumps({"max_position_embeddings": value}), encoding="utf-8")
    assert input_limit(root) is None


def test_unreadable_or_missing_files_state_nothing(tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    (root / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    (root / "config.json").write_text("[1, 2]", encoding="utf-8")
    assert input_limit(root) is None
    assert input_limit(tmp_path / "absent") is None


def test_the_test_encoder_reads_its_128_positions(tiny_encoder):
    assert input_limit(tiny_encoder) == 128


def test_a_max_length_past_the_backbone_is_refused_in_one_line_naming_the_setting(tmp_path):
    root = _backbone(tmp_path / "b", positions=128)
    check_max_length(root, BackboneConfig(name="tiny", path=root, max_length=128))
    with pytest.raises(UserError) as refused:
        check_max_length(root, BackboneConfig(name="tiny", path=root, max_length=256))
    message = str(refused.value)
    assert "\n" not in message
    assert "backbone.max_length is 256" in message and "at most 128 tokens" in message
    # nothing stated: nothing to check against
    check_max_length(tmp_path / "absent", BackboneConfig(name="tiny", max_length=512))
