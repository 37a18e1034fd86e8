"""What `thaw run` prints when it ends: the serving cost of the version as it will serve."""

from thaw.config import ThawConfig
from thaw_cli.commands_pipeline import _print_outcome


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
    _print_outcome(cfg, _summary({"served": profile | {"engine": "onnxruntime fp32"}}), 60.0)
    assert "serving      p95 6.4 ms at batch 1, 218 rows/s at batch 64 (onnxruntime fp32;" in capsys.readouterr().out
    _print_outcome(cfg, _summary({"serving": profile | {"precision": "cpu-bf16-autocast"}, "served": None}), 60.0)
    assert "(pytorch, cpu-bf16-autocast;" in capsys.readouterr().out
    _print_outcome(cfg, _summary({}), 60.0)  # a summary from before thaw measured it
    assert "serving " not in capsys.readouterr().out
