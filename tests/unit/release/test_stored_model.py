"""Registry values are input: a digest tag is a digest, a version a number, and a stored
model holds only what thaw writes, before anything of it is used."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.release.stored_model import (
    ENTRY_FILE,
    check_stored_files,
    checked_version,
    installed_entry,
    recorded_digest,
)
from thaw.errors import UserError
from thaw.offline import service_environment
from thaw.serving import MODEL_ARTIFACT

GOOD_MLMODEL = {
    "flavors": {
        "python_function": {
            "loader_module": "mlflow.pyfunc.loaders.code_model",
            "model_code_path": f"/somewhere/thaw/{ENTRY_FILE}",
            "artifacts": {MODEL_ARTIFACT: {"path": "artifacts/frozen", "uri": "/somewhere/frozen"}},
            "env": {"virtualenv": "python_env.yaml"},
        }
    }
}


def stored(tmp_path: Path, mlmodel: dict | None = None) -> Path:
    """A stored model laid out the way thaw registers one."""
    root = tmp_path / "model"
    model = root / "artifacts" / "frozen"
    (model / "adapter").mkdir(parents=True)
    for name in ("model.json", "labels.json", "head.safetensors", "adapter/adapter_model.safetensors"):
        (model / name).write_bytes(b"{}")
    (model / "adapter" / "README.md").write_text("PEFT's adapter card")
    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel or GOOD_MLMODEL))
    (root / "requirements.txt").write_text("mlflow\n")
    (root / ENTRY_FILE).write_bytes(installed_entry().read_bytes())
    return root


@pytest.mark.parametrize("tag", ["../..", "/tmp", "", "A" * 64, "0" * 63, "0" * 64 + "/..", "0" * 64 + "\n"])
def test_a_digest_tag_that_is_not_64_hex_digits_is_refused(tag):
    with pytest.raises(UserError, match="refusing to load it"):
        recorded_digest("m", "3", {"thaw.model.sha256": tag} if tag else {})
    assert recorded_digest("m", "3", {"thaw.model.sha256": "0a" * 32}) == "0a" * 32


@pytest.mark.parametrize("version", ["0", "../1", "1/../2", "1 ", "-1", "1e3", ""])
def test_a_version_that_is_not_a_number_is_refused(version):
    with pytest.raises(UserError, match="is not a model version number"):
        checked_version("m", version)
    assert checked_version("m", "12") == "12"


def test_what_thaw_registers_passes(tmp_path):
    root = stored(tmp_path)
    assert check_stored_files(root, "m", "1") == root / "artifacts" / "frozen"


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda r: (r / "python_model.pkl").write_bytes(b"\x80\x04."), "it stores python_model.pkl"),
        (lambda r: (r / "evil.py").write_text("import os"), "it stores evil.py"),
        (lambda r: (r / "code").mkdir() or (r / "code" / "x.py").write_text(""), "it stores code/x.py"),
        (lambda r: (r / ENTRY_FILE).write_text("import os; os.system('id')"), "is not the installed thaw's"),
        (lambda r: (r / "artifacts" / "frozen" / "weights.bin").write_bytes(b"\x80"), "weights.bin"),
        (
            lambda r: (r / "artifacts" / "other").mkdir() or (r / "artifacts" / "other" / "a.json").write_text(""),
            "artifacts/other/a.json",
        ),
        (lambda r: (r / "artifacts" / "frozen" / "l.json").symlink_to("/etc/passwd"), "is a link"),
    ],
    ids=["pickle", "code-file", "code-dir", "changed-entry", "torch-bin", "other-artifact", "link"],
)
def test_anything_thaw_does_not_write_is_refused_by_name(tmp_path, change, needle):
    root = stored(tmp_path)
    change(root)
    with pytest.raises(UserError, match=needle):
        check_stored_files(root, "m", "1")


@pytest.mark.parametrize(
    "pyfunc",
    [
        {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"},
        {"loader_module": "mlflow.pyfunc.loaders.code_model", "model_code_path": "evil.py"},
        {"loader_module": "mlflow.pyfunc.model", "model_code_path": ENTRY_FILE},
        {"loader_module": "mlflow.pyfunc.loaders.code_model", "model_code_path": ENTRY_FILE, "code": "code"},
        {"loader_module": "mlflow.pyfunc.loaders.code_model", "model_code_path": ENTRY_FILE, "artifacts": {}},
        {
            "loader_module": "mlflow.pyfunc.loaders.code_model",
            "model_code_path": ENTRY_FILE,
            "artifacts": {MODEL_ARTIFACT: {"path": "artifacts/../.."}},
        },
    ],
    ids=["pickled", "other-code", "other-loader", "code-dir", "no-artifact", "artifact-outside"],
)
def test_an_mlmodel_that_loads_anything_but_thaws_entry_is_refused(tmp_path, pyfunc):
    root = stored(tmp_path, {"flavors": {"python_function": pyfunc}})
    with pytest.raises(UserError, match="MLmodel"):
        check_stored_files(root, "m", "1")


def test_servers_get_no_pii_key_and_no_tracking_password(monkeypatch):
    monkeypatch.setenv("THAW_PII_SECRET", "k")
    monkeypatch.setenv("MY_TEAM_PII_KEY", "k2")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")
    env = service_environment(("MY_TEAM_PII_KEY",), PREFECT_HOME="/x")
    assert not {"THAW_PII_SECRET", "MY_TEAM_PII_KEY", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] == "false" and env["PREFECT_HOME"] == "/x"
    assert env["HF_HUB_OFFLINE"] == "1" and "PATH" in env


@pytest.mark.parametrize(
    "mlmodel",
    [
        ["flavors"],
        "flavors",
        {"flavors": ["python_function"]},
        {"flavors": {"python_function": ["x"]}},
        {"flavors": {"python_function": {**GOOD_MLMODEL["flavors"]["python_function"], "artifacts": ["model"]}}},
        {
            "flavors": {
                "python_function": {**GOOD_MLMODEL["flavors"]["python_function"], "artifacts": {MODEL_ARTIFACT: "a"}}
            }
        },
    ],
    ids=["list", "string", "flavors-list", "pyfunc-list", "artifacts-list", "artifact-string"],
)
def test_an_mlmodel_of_another_shape_is_refused_not_a_traceback(tmp_path, mlmodel):
    # whoever may edit a version wrote the file: a list or a string where thaw writes a
    # mapping raised AttributeError in `thaw predict`, `serve` and `approve`
    root = stored(tmp_path, mlmodel)
    with pytest.raises(UserError, match="its MLmodel .*: refusing to load it"):
        check_stored_files(root, "m", "1")


def test_an_mlmodel_that_is_not_utf8_is_refused(tmp_path):
    root = stored(tmp_path)
    (root / "MLmodel").write_bytes(b"flavors: \xff\n")
    with pytest.raises(UserError, match="its MLmodel file is missing or unreadable"):
        check_stored_files(root, "m", "1")
