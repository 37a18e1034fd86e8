"""Serving: the registered model as PyTorch serves it against its ONNX artifact (fp32 and
int8), same rows, one run, tokenising and scrubbing counted.

The model is a frozen-rung classifier on the real all-MiniLM-L6-v2 (mean pooling, a
logistic-regression head fitted on CLINC150's 10 training rows per intent; thaw's demo
tickets where ../shared is absent), exported as thaw exports at registration
(``tasks.release.serving_artifact``). Each engine is timed on the same CLINC150 test
texts: batch 1 (each text alone) and batch 64, through ``thaw.serving.ThawPredictor``
(scrubbing to entity types, tokenising, encoder, head: what ``thaw serve`` runs) and,
separately, the model alone (tokenising, encoder, head) so the scrubber's share shows.
An int8 encoder reads each text alone inside a batch of 64 too (``thaw.onnx_export.OnnxEncoder``:
its answer must not depend on the texts beside it), so its batch-64 figures are of that.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import row, shared_datasets

SHARED = shared_datasets()


def _data() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    path = SHARED / "clinc150" / "data_full.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        per_class: dict[str, list[str]] = {}
        for text, label in data["train"]:
            per_class.setdefault(label, []).append(text)
        train = [(t, label) for label, texts in sorted(per_class.items()) for t in texts[:10]]
        return train, [(t, label) for t, label in data["test"]], "CLINC150 (10 training rows per intent; test split)"
    import csv
    import io

    from thaw.demo_data import generate_support_tickets

    rows = [(r["message"], r["intent"]) for r in csv.DictReader(io.StringIO(generate_support_tickets(1200)[0]))]
    rows = [r for r in rows if r[0] and r[1]]
    return rows[:800], rows[800:], "thaw's demo tickets (../shared absent: not evidence)"


def _frozen_model(directory: Path, train: list[tuple[str, str]]) -> Path:
    """A frozen-rung model directory as thaw writes one (``tasks.ladder.frozen_rung``)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from tasks.ladder.frozen_rung import save_linear_head
    from thaw.config import BackboneConfig, DataConfig, PiiConfig
    from thaw.modeling import embed_texts, load_encoder, resolve_backbone
    from thaw.pii.masking import input_form

    cfg = BackboneConfig()
    ref, path = resolve_backbone(cfg)
    tokenizer, encoder = load_encoder(path, torch.device("cpu"))
    x = embed_texts([t for t, _ in train], tokenizer, encoder, cfg, torch.device("cpu"))
    labels = tuple(sorted({label for _, label in train}))
    fit = LogisticRegression(C=10.0, max_iter=2000).fit(x, [label for _, label in train])
    order = [list(fit.classes_).index(label) for label in labels]
    meta = {
        "rung": "frozen",
        "kind": "head_on_frozen_encoder",
        "backbone": json.loads(ref.to_json()),
        "pooling": cfg.pooling,
        "max_length": cfg.max_length,
        "input_form": input_form(PiiConfig(), DataConfig().max_text_chars),
        "head": "logistic regression",
        "trained_on": ["train"],
    }
    save_linear_head(
        directory, fit.coef_[order].astype(np.float32), fit.intercept_[order].astype(np.float32), labels, meta
    )
    return directory


def _time(predict, texts: list[str], batch: int, clear) -> dict:
    """p50/p95 ms per call and rows/s: each text alone (batch 1) or in batches."""
    calls = [[t] for t in texts] if batch == 1 else [texts[i : i + batch] for i in range(0, len(texts), batch)]
    predict(calls[0])
    ms = []
    for call in calls:
        clear()
        started = time.perf_counter()
        predict(call)
        ms.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(ms, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "rows_per_s": sum(map(len, calls)) / (sum(ms) / 1000)}


def run(single_rows: int = 300, batch_rows: int = 1280) -> dict:
    from tasks.release.serving_artifact import build_onnx_artifact
    from thaw.modeling import embed_texts, encode_texts, head_probabilities
    from thaw.pii.masking import clear_cache
    from thaw.serving import ThawPredictor

    train, test, source = _data()
    rng = np.random.default_rng(20261202)
    picked = [test[i] for i in rng.permutation(len(test))[: max(single_rows, batch_rows)]]
    texts, labels = [t for t, _ in picked], [label for _, label in picked]
    with tempfile.TemporaryDirectory(prefix="thaw-serving-") as tmp:
        model_dir = _frozen_model(Path(tmp) / "model", train)
        started = time.perf_counter()
        report = build_onnx_artifact(model_dir, texts[:batch_rows], labels[:batch_rows], 0.95, 0.995)
        export_s = time.perf_counter() - started
        engines = {"pytorch": ThawPredictor(model_dir, use_onnx=False)}
        if report.file is not None:
            engines[f"onnxruntime {report.variant}"] = ThawPredictor(model_dir)
        # the variant not kept was dropped: rebuild it, to time both beside PyTorch
        from thaw.onnx_export import FP32_FILE, INT8_FILE, OnnxEncoder, export_encoder, quantize_int8

        torch_model = engines["pytorch"]
        fp32, int8 = Path(tmp) / FP32_FILE, Path(tmp) / INT8_FILE
        export_encoder(torch_model.encoder, torch_model.tokenizer, "mean", fp32)
        quantize_int8(fp32, int8)
        for variant, path in (("fp32", fp32), ("int8", int8)):
            name = f"onnxruntime {variant}"
            if name not in engines:
                engines[f"{name} (not kept)"] = ThawPredictor(model_dir, use_onnx=False)
                engines[f"{name} (not kept)"].use_session(OnnxEncoder(path), name)

        def model_only(engine):
            def predict(batch):
                if engine.session is not None:
                    feats = engine.session.embed(encode_texts(engine.tokenizer, batch, 128), 64)
                else:
                    feats = embed_texts(batch, engine.tokenizer, engine.encoder, engine.backbone_cfg, engine.device)
                return head_probabilities(feats, engine.head)

            return predict

        figures = {}
        for name, engine in engines.items():
            figures[name] = {
                "served_b1": _time(engine.predict, texts[:single_rows], 1, clear_cache),
                "served_b64": _time(engine.predict, texts[:batch_rows], 64, clear_cache),
                "model_b1": _time(model_only(engine), texts[:single_rows], 1, lambda: None),
                "model_b64": _time(model_only(engine), texts[:batch_rows], 64, lambda: None),
            }
    print(f"Serving ({source}; {single_rows} texts at batch 1, {batch_rows} at batch 64; same rows, one run)")
    row("ONNX artifact kept", f"{report.variant or 'none'}: {report.reason}")
    row("export + quantise + check (s)", f"{export_s:.1f}")
    row("test accuracy: PyTorch / ONNX fp32 / int8", f"{report.accuracy_torch} / {report.accuracy_fp32} / "
        f"{report.accuracy_int8}")  # fmt: skip
    base = figures["pytorch"]
    for name, f in figures.items():
        for key, what in (("served", "served (scrub + tokenise + encoder + head)"), ("model", "model only")):
            b1, b64 = f[f"{key}_b1"], f[f"{key}_b64"]
            ratio = base[f"{key}_b1"]["p95_ms"] / b1["p95_ms"]
            row(
                f"{name}, {what}: b1 p50/p95 ms; b64 p95 ms, rows/s",
                f"{b1['p50_ms']:.1f}/{b1['p95_ms']:.1f}; {b64['p95_ms']:.0f}, {b64['rows_per_s']:.0f}",
                "" if name == "pytorch" else f"{ratio:.1f}x PyTorch's p95 at batch 1 (goal >= 3x)",
            )
    return {"report": report.to_dict(), "figures": figures, "source": source, "export_seconds": export_s}
