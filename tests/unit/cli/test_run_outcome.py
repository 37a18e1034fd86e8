"""What `thaw run` prints when it ends: the serving cost of the version as it will serve,
and next commands that can be pasted as printed."""

import functools
import shlex
import sys
from pathlib import Path

from thaw.config import ThawConfig
from thaw_cli.commands_pipeline import _print_outcome
from thaw_cli.common import thaw_command


def _summary(registered: dict) -> dict:
    return {
        "model": {"name": "tickets", "version": "3", "alias": "challenger"},
        "selected_rung": "frozen",
        "test": {
            "metrics": {"accuracy": 0.9, "accuracy_low": 0.88, "accuracy_high": 0.92, "macro_f1": 0.89, "examples": 480}
        },  # fmt: skip
        "curation": {"splits": {"train": 2000, "validation": 400, "test": 480}, "pii": {"rows_per_s": 350.0}},
        "mlflow": {"run_id": "abc"},
        "registered_model": registered,
    }


def test_the_serving_cost_of_the_registered_version_is_printed(tmp_path, capsys):
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    profile = {"p95_ms": 6.43, "rows_per_s": 218.0, "batch": 64, "precision": "onnxruntime fp32"}
    _print_outcome(cfg, _summary({"served": profile | {"engine": "onnxruntime fp32"}}), 60.0, thaw_command)
    assert "serving      p95 6.4 ms at batch 1, 218 rows/s at batch 64 (onnxruntime fp32;" in capsys.readouterr().out
    _print_outcome(
        cfg, _summary({"serving": profile | {"precision": "cpu-bf16-autocast"}, "served": None}), 60.0, thaw_command
    )
    assert "(pytorch, cpu-bf16-autocast;" in capsys.readouterr().out
    _print_outcome(cfg, _summary({}), 60.0, thaw_command)  # a summary from before thaw measured it
    assert "serving " not in capsys.readouterr().out


def test_a_run_that_reused_a_cached_curation_says_its_scrubbing_speed_is_from_then(tmp_path, capsys):
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    _print_outcome(cfg, _summary({}), 60.0, thaw_command)
    assert "test 480 rows (PII scrubbed at 350 rows/s)" in capsys.readouterr().out
    _print_outcome(cfg, _summary({}) | {"caches": {"curation_hit": True}}, 60.0, thaw_command)
    assert "test 480 rows (reused from the curation cache, scrubbed at 350 rows/s when made)" in capsys.readouterr().out


def test_the_next_commands_call_thaw_as_it_was_called_with_the_users_config_and_workspace(
    tmp_path, capsys, monkeypatch
):
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    elsewhere = tmp_path / "my tools" / "thaw"  # not on PATH, a space in it
    monkeypatch.setattr(sys, "argv", [str(elsewhere), "run"])
    again = functools.partial(thaw_command, config="cfg dir/run.yaml", workspace="../ws")
    _print_outcome(cfg, _summary({}), 60.0, again)
    out = capsys.readouterr().out
    assert "thaw finished in 1.0 min." in out
    lineage = next(line for line in out.splitlines() if line.startswith("  lineage"))
    assert shlex.split(lineage.split(maxsplit=1)[1]) == [
        str(elsewhere), "lineage", "tickets@challenger", "--config", "cfg dir/run.yaml", "--workspace", "../ws"
    ]  # fmt: skip
    approve = f"{shlex.quote(str(elsewhere))} approve tickets 3 --reason 'reviewed transfer note and test report' "
    assert approve + "--config 'cfg dir/run.yaml' --workspace ../ws\n" in out


def test_thaw_is_called_by_name_when_that_name_on_path_is_this_executable(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "thaw"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "argv", [str(exe), "demo"])
    assert thaw_command() == "thaw"
    monkeypatch.setattr(sys, "argv", [".venv/bin/thaw", "demo"])  # another thaw than PATH's, as typed
    assert thaw_command() == ".venv/bin/thaw"
    monkeypatch.setattr(sys, "argv", [str(Path("thaw_cli") / "__main__.py"), "run"])
    assert thaw_command("models", workspace="w") == shlex.join(
        [sys.executable, "-m", "thaw_cli", "models", "--workspace", "w"]
    )
