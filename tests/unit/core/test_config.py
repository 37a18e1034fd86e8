from pathlib import Path

import pytest
from pydantic import ValidationError

from thaw.config import ThawConfig, load_config
from thaw.errors import UserError


def test_defaults_are_valid_and_frozen():
    cfg = load_config()
    assert cfg.backbone.name == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(ValidationError):
        cfg.model_name = "x"


def test_overrides_apply_dotted_keys(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name: m1\ndata:\n  text_column: body\n", encoding="utf-8")
    cfg = load_config(path, {"data.label_column": "intent", "data.id_column": None})
    assert (cfg.model_name, cfg.data.text_column, cfg.data.label_column) == ("m1", "body", "intent")


def test_unknown_key_is_named(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  txt_column: body\n", encoding="utf-8")
    with pytest.raises(UserError, match="data.txt_column"):
        load_config(path)


def test_cross_field_rule_is_enforced():
    with pytest.raises(Exception, match="fraction"):
        ThawConfig.model_validate({"split": {"validation_fraction": 0.45, "test_fraction": 0.45}})


def test_missing_config_file_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_digest_changes_with_content():
    assert load_config().digest() != load_config(None, {"model_name": "other"}).digest()


@pytest.mark.parametrize(
    "override,where",
    [
        ({"tracking.tracking_uri": "https://ana:s3cret@mlflow.example.com"}, "tracking.tracking_uri"),
        ({"versioning.remote_url": "s3://key:secret@bucket/data"}, "versioning.remote_url"),
        ({"versioning.remote_options": {"account_key": "abc"}}, "versioning.remote_options.account_key"),
        ({"versioning.remote_options": {"connection_string": "abc"}}, "versioning.remote_options.connection_string"),
        ({"versioning.remote_options": {"passphrase": "abc"}}, "versioning.remote_options.passphrase"),
        ({"curation.dask_address": "tcp://u:p@10.0.0.1:8786"}, "curation.dask_address"),
        ({"tracking.tracking_uri": "https://ghp_abc123@mlflow.example.com"}, "tracking.tracking_uri"),
        ({"versioning.remote_url": "https://store.example.com/data?token=abc"}, "versioning.remote_url"),
        ({"versioning.remote_url": "https://acct.blob.core.windows.net/c?sv=1&sig=abc"}, "versioning.remote_url"),
    ],
)
def test_credentials_are_refused_in_any_form(override, where):
    with pytest.raises(UserError, match=rf"credentials do not belong in the configuration.*{where}"):
        load_config(None, override)


def test_an_ssh_account_and_endpoint_options_are_fine():
    cfg = load_config(
        None,
        {
            "versioning.remote_url": "ssh://git@storage.example.com/srv/dvc",
            "versioning.remote_options": {"endpointurl": "http://minio:9000"},
        },
    )
    assert cfg.versioning.remote_url.startswith("ssh://git@")


def test_a_key_given_twice_is_refused_naming_the_line(tmp_path: Path):
    path = tmp_path / "thaw.yaml"
    path.write_text("model_name: a\ntraining:\n  seed: 1\n  seed: 2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"thaw.yaml line 4: not valid YAML \(the key 'seed' appears twice\)"):
        load_config(path)


def test_a_character_yaml_does_not_allow_is_refused_naming_its_line_and_code_point(tmp_path: Path):
    # a pasted terminal code: PyYAML's ReaderError has a position, not a line, and was
    # reported as "not valid YAML (ReaderError)"
    path = tmp_path / "thaw.yaml"
    path.write_text('model_name: a\nworkspace: "/srv/\x1b[2Jthaw"\n', encoding="utf-8")
    refused = r"thaw.yaml line 2: not valid YAML \(U\+001B is not allowed .* escape \\u001b\)"
    with pytest.raises(UserError, match=refused):
        load_config(path)


def test_the_shipped_configuration_climbs_every_rung_the_decision_table_can_suggest():
    from thaw.rung_registry import rung_methods

    shipped = load_config(Path(__file__).resolve().parents[3] / "configs" / "default.yaml")
    suggestable = {m.name for m in rung_methods() if m.adapted and m.planned_in}
    assert suggestable <= set(shipped.training.ladder.rungs)
    assert shipped.training.ladder.refit == "always" and not shipped.training.head.try_mlp


@pytest.mark.parametrize("name", ["my model", "../x", "a/b", "Ünïcödé", "-lead", "x" * 101, "x\u00a0y"])
def test_a_model_name_that_cannot_name_a_directory_and_a_model_is_refused_naming_where_it_came_from(
    tmp_path: Path, name: str
):
    """It becomes a directory, a registered model and part of run names: a 300-character
    paste was accepted and the pipeline started. The error says the value came from the flag."""
    with pytest.raises(UserError) as caught:
        load_config(None, {"model_name": name})
    message = str(caught.value)
    assert message.startswith("invalid configuration: model_name (given on the command line): ")
    assert "is not a model name" in message and len(message) < 400
    config = tmp_path / "c.yaml"
    config.write_text(f"model_name: {name!r}\n".replace("\\xa0", "\u00a0"), encoding="utf-8")
    with pytest.raises(UserError, match=f"^{config}: invalid configuration: model_name: "):
        load_config(config)
    assert load_config(None, {"model_name": "tickets-v2.1_x" + "y" * 86}).model_name.startswith("tickets")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("training.ladder.time_budget_minutes", ".inf"),  # overflowed where the budget became epochs
        ("training.ladder.cv_repeat_minutes", ".inf"),
        ("state_budget_gb", ".nan"),
        ("training.ladder.alpha", ".nan"),
    ],
)
def test_a_setting_that_is_infinite_or_not_a_number_is_refused_naming_it(tmp_path: Path, key: str, value: str):
    *parents, leaf = key.split(".")
    text = "".join(f"{'  ' * depth}{name}:\n" for depth, name in enumerate(parents))
    config = tmp_path / "c.yaml"
    config.write_text(text + f"{'  ' * len(parents)}{leaf}: {value}\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"^{config}: invalid configuration: {key}: "):
        load_config(config)


@pytest.mark.parametrize("key", ["backbone.batch_size", "training.ladder.finetune.batch_size"])
def test_a_batch_past_what_memory_holds_is_refused_naming_it(key: str):
    assert load_config(None, {key: 1024})  # the largest taken
    with pytest.raises(
        UserError, match=f"{key} .given on the command line.: Input should be less than or equal to 1024"
    ):
        load_config(None, {key: 64000})
