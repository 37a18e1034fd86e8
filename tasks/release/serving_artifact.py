"""The ONNX artifact of the model being registered: exported, quantised and checked on
the test rows (``thaw.onnx_export`` says what is kept and why)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.onnx_export import (
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    ONNX_META,
    OnnxEncoder,
    OnnxReport,
    export_encoder,
    file_sha256,
    quantize_int8,
)


@task(name="build-onnx-artifact")
def onnx_artifact(
    model_dir: Path, curated: DatasetVersion, cfg: ThawConfig, torch_predictions: Sequence[str] | None = None
) -> tuple[dict | None, dict | None]:
    """The registered model's ONNX artifact, built and checked on the test split, and the
    model's serving cost as it will then be served: (``onnx.json`` as a dict, latency
    profile); (None, None) when ``serving.onnx`` is off or the export was not kept.
    ``torch_predictions``: the model's PyTorch labels for the test rows, when the run
    has them already (``predict-test-split``)."""
    from thaw.latency import measure_latency

    if not cfg.serving.onnx:
        return None, None
    test = curated.read(cfg.root, "test")
    report = build_onnx_artifact(
        model_dir,
        test.texts,
        test.labels,
        cfg.training.confidence_level,
        cfg.serving.onnx_min_agreement,
        torch_predictions,
    )
    if report.file is None:
        return report.to_dict(), None
    served = measure_latency(model_dir, test.texts, cfg.serving.latency_rows, cfg.serving.latency_batch)
    return report.to_dict(), served.to_dict() | {"engine": f"onnxruntime {report.variant}"}


def _accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(np.mean([a == b for a, b in zip(truth, predicted, strict=True)])) if truth else 0.0


def build_onnx_artifact(
    model_dir: Path,
    texts: Sequence[str],
    labels: Sequence[str],
    confidence: float,
    min_agreement: float,
    torch_predictions: Sequence[str] | None = None,
) -> OnnxReport:
    """Export, quantise and check the model in ``model_dir`` on the test rows; keep what
    holds under ``model_dir/onnx/`` with ``onnx.json`` (see the module). The PyTorch
    labels the exports are checked against are ``torch_predictions`` when given (one
    per row of ``texts``), else predicted here."""
    from thaw.metrics import wilson_interval
    from thaw.serving import ThawPredictor

    if torch_predictions is not None and len(torch_predictions) != len(texts):
        raise ValueError(f"{len(torch_predictions)} PyTorch predictions for {len(texts)} test rows")
    target = model_dir / ONNX_DIR
    shutil.rmtree(target, ignore_errors=True)
    staging = model_dir / f".{ONNX_DIR}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch_model = ThawPredictor(model_dir, use_onnx=False)
    torch_pred = (
        list(torch_predictions) if torch_predictions is not None else torch_model.predict(texts)["label"].tolist()
    )
    export_encoder(torch_model.encoder, torch_model.tokenizer, torch_model.backbone_cfg.pooling, staging / FP32_FILE)
    quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
    predictions = {}
    for variant, name in (("fp32", FP32_FILE), ("int8", INT8_FILE)):  # the loaded model, its encoder swapped
        torch_model.use_session(OnnxEncoder(staging / name))
        predictions[variant] = torch_model.predict(texts)["label"].tolist()
    torch_model.use_session(None, "pytorch")
    n = len(labels)
    acc = {k: _accuracy(labels, v) for k, v in (("torch", torch_pred), *predictions.items())}
    agree = {k: _accuracy(torch_pred, v) for k, v in predictions.items()}
    low, high = wilson_interval(round(acc["torch"] * n), n, confidence)
    common = {
        "agreement_fp32": round(agree["fp32"], 4),
        "agreement_int8": round(agree["int8"], 4),
        "accuracy_torch": round(acc["torch"], 4),
        "accuracy_fp32": round(acc["fp32"], 4),
        "accuracy_int8": round(acc["int8"], 4),
        "accuracy_interval": (round(low, 4), round(high, 4)),
        "rows": n,
    }
    if agree["fp32"] < min_agreement:
        shutil.rmtree(staging)
        return OnnxReport(
            None,
            None,
            f"no ONNX artifact: the fp32 export agrees with PyTorch on {agree['fp32']:.2%} of {n} test rows, under "
            f"{min_agreement:.1%}",
            **common,
        )
    int8_holds = agree["int8"] >= min_agreement and low <= acc["int8"] <= high
    if int8_holds:
        keep, variant = INT8_FILE, "int8"
        reason = (
            f"int8: agrees with PyTorch on {agree['int8']:.2%} of {n} test rows (>= {min_agreement:.1%}) and its test "
            f"accuracy {acc['int8']:.4f} is inside PyTorch's interval [{low:.4f}, {high:.4f}]"
        )
    else:
        keep, variant = FP32_FILE, "fp32"
        why = (
            f"agrees with PyTorch on {agree['int8']:.2%} of rows (< {min_agreement:.1%})"
            if agree["int8"] < min_agreement
            else f"test accuracy {acc['int8']:.4f} is outside PyTorch's interval [{low:.4f}, {high:.4f}]"
        )
        reason = f"fp32 ONNX: the int8 model {why}"
    (staging / (INT8_FILE if keep == FP32_FILE else FP32_FILE)).unlink()
    report = OnnxReport(keep, variant, reason, **common, sha256=file_sha256(staging / keep))
    (staging / ONNX_META).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    staging.rename(target)
    return report
