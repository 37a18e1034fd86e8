"""JSON and YAML someone else wrote (thaw.parse), and a stored model's JSON read as input
(thaw.serving.read_model_json): what the parsers raise past their syntax errors is the
error the callers already handle, and a model.json that is not thaw's is one line."""

from __future__ import annotations

import json

import pytest
import yaml

from thaw.config import load_yaml_strict
from thaw.errors import UserError
from thaw.parse import json_problem, json_value, yaml_value
from thaw.serving import read_model_json

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (DEEP, "nested too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "4300 digits"),
        ('{"a": 1', "line 1: Expecting ',' delimiter"),
        (b"\xff\xfe{", "can't decode byte"),
    ],
)
def test_text_json_cannot_read_is_a_value_error_saying_why(text, said):
    with pytest.raises(ValueError) as raised:
        json_value(text)
    assert said in json_problem(raised.value)


def test_what_json_reads_is_read_as_json_reads_it():
    assert json_value('{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}
    assert json_value("[" * 500 + "]" * 500) is not None  # deep, within the limit


def test_yaml_nested_past_the_limit_is_a_yaml_error(tmp_path):
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        yaml_value("a: " + DEEP)
    config = tmp_path / "thaw.yaml"
    config.write_text("model_name: x\nsplit: " + DEEP + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"thaw.yaml: not valid YAML \(nested too deeply to read\)"):
        load_yaml_strict(config)


META = {
    "backbone": {"name": "sentence-transformers/all-MiniLM-L6-v2", "revision": "0" * 64, "source": "package:x"},
    "kind": "head_on_frozen_encoder",
    "max_length": 256,
    "pooling": "mean",
    "rung": "frozen",
}


@pytest.mark.parametrize(
    ("meta", "labels", "said"),
    [
        (DEEP, ["a"], "model.json: unreadable (arrays or objects nested too deeply to read)"),
        ("[1]", ["a"], "model.json: no backbone with a name, source and revision"),
        ({**META, "backbone": ["x"]}, ["a"], "model.json: no backbone with a name, source and revision"),
        ({**META, "backbone": {**META["backbone"], "extra": "x"}}, ["a"], "no backbone with a name"),
        ({**META, "backbone": {**META["backbone"], "name": 7}}, ["a"], "must be short text"),
        ({**META, "pooling": "max"}, ["a"], "model.json: 1 validation error"),
        ({**META, "max_length": "256; rm"}, ["a"], "model.json: 1 validation error"),
        (META, {"a": 1}, "labels.json: not a list of class names"),
        (META, [], "labels.json: not a list of class names"),
        (META, ["a", 2], "labels.json: not a list of class names"),
    ],
)
def test_a_model_json_thaw_did_not_write_is_refused_in_one_line(tmp_path, meta, labels, said):
    model = tmp_path / "model"
    model.mkdir()
    for name, value in (("model.json", meta), ("labels.json", labels)):
        (model / name).write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    with pytest.raises(UserError) as raised:
        read_model_json(model)
    assert str(raised.value).startswith("model/") and said in str(raised.value) and "\n" not in str(raised.value)


def test_a_model_json_as_thaw_writes_it_is_read(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(META), encoding="utf-8")
    (tmp_path / "labels.json").write_text('["refund", "lost_card"]', encoding="utf-8")
    assert read_model_json(tmp_path) == (META, ["refund", "lost_card"])


def test_the_onnx_and_words_records_of_a_stored_model_nested_too_deep_are_refused(tmp_path):
    from thaw.onnx_export import ONNX_DIR, ONNX_META, read_onnx_meta
    from thaw.words import WORDS_JSON, WordFeatures

    (tmp_path / ONNX_DIR).mkdir()
    (tmp_path / ONNX_DIR / ONNX_META).write_text(DEEP, encoding="utf-8")
    with pytest.raises(UserError, match="onnx.json: not readable JSON"):
        read_onnx_meta(tmp_path)
    (tmp_path / WORDS_JSON).write_text(DEEP, encoding="utf-8")
    with pytest.raises(ValueError, match="nested too deeply"):  # ThawPredictor says it as the model's UserError
        WordFeatures.load(tmp_path)
