"""The CPU-fast serving artifact: the registered encoder in ONNX, int8 where it holds.

At registration (``tasks.release.serving_artifact.build_onnx_artifact``) the selected model's encoder, with its adapter
merged or its changed tensors applied and its pooling, is exported to ONNX (opset 17,
one file, no external data) and quantised to int8 (ONNX Runtime's dynamic quantisation
of the matrix products). Both are run on the test texts beside the model as PyTorch
serves it:

- the fp32 export must agree with PyTorch on at least ``min_agreement`` of the rows, or
  no ONNX artifact is kept (an export that changed the model is not served);
- the int8 model is kept when it agrees with PyTorch on at least ``min_agreement`` of
  the rows and its test accuracy lies inside the Wilson interval of PyTorch's; else the
  fp32 export is kept, and ``onnx.json`` says why.

``onnx/onnx.json`` records the file kept, its sha256, both agreements and accuracies and
the reason. ``thaw.serving.ThawPredictor`` runs the file through ONNX Runtime when it is
there (``THAW_ONNX=0`` turns that off): tokenising and scrubbing are unchanged, the
encoder and pooling are the session, the head is the same numpy product. The file is
input like any stored file: one read with external data or an operator domain outside
ONNX's own and ONNX Runtime's is refused before a session is built.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thaw.errors import UserError
from thaw.parse import json_value

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
ONNX_META = "onnx.json"
FP32_FILE, INT8_FILE = "encoder.onnx", "encoder.int8.onnx"
OPSET = 17
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
# Operators that take an activation scale from the whole tensor of a call: ONNX's own, and
# ONNX Runtime's fused forms of it (what its optimiser writes when a session is saved)
DYNAMIC_QUANTISATION = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM"})
DISABLE_ENV = "THAW_ONNX"  # "0": serve with PyTorch even where an ONNX artifact exists


def onnx_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_onnx_file(path: Path):
    """The ONNX model in ``path`` (its ``onnx.ModelProto``), refused (UserError) when it
    reads other files (external data) or names an operator domain outside ONNX's and ONNX
    Runtime's own."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a truncated or foreign file: onnx raises its own types
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    external = [t.name or "(unnamed)" for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise UserError(f"{path}: tensor {external[0][:80]!r} is stored outside the file; refusing to load it")
    domains = {op.domain for op in _nodes(model.graph)} | {o.domain for o in model.opset_import}
    foreign = sorted(domains - ALLOWED_DOMAINS)
    if foreign or model.functions:
        raise UserError(f"{path}: operator domain {(foreign or ['local functions'])[0][:80]!r} is not ONNX's own")
    return model


def _nodes(graph):
    """Every node of ``graph`` and of the graphs inside its nodes (If, Loop and Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for inner in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _nodes(inner)


def _tensors(graph):
    """Every tensor ``graph`` holds: initializers (sparse ones' values too) and tensors in
    node attributes (a Constant's value), its inner graphs' as well: any may say its bytes
    are in another file."""
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            yield from ([attr.t] if attr.HasField("t") else [])
            yield from attr.tensors
            yield from (sparse.values for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []))
            for inner in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _tensors(inner)


class OnnxEncoder:
    """An exported encoder run by ONNX Runtime: token ids in, pooled vectors out.

    A graph with dynamic quantisation (``DYNAMIC_QUANTISATION``: ``quantize_int8`` writes
    ``DynamicQuantizeLinear``) runs each text alone: such an operator takes one activation
    scale from the whole tensor of a call, so in a batch a text's answer would depend on
    the texts beside it and their padding. On a CLINC150 classifier, 27 of 1,280 test labels changed between
    batches of 64 and one text at a time (confidences by up to 0.12). One at a time, the
    int8 encoder ran 552 texts/s against 1,276 in batches of 64, and fp32's 304 one at a
    time (model only, 2 cores; README, "The ONNX artifact")."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        # in whichever process loads the model (a user's mlflow.pyfunc.load_model too): ONNX
        # Runtime's telemetry stays off unless that process chose otherwise (thaw.offline)
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime as ort

        from thaw.modeling import usable_cores

        graph = check_onnx_file(path).graph
        self.rows_alone = any(node.op_type in DYNAMIC_QUANTISATION for node in _nodes(graph))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, encoded: dict, batch_size: int) -> np.ndarray:
        """Pooled, L2-normalised vectors of pre-tokenised texts (``thaw.modeling.encode_texts``),
        ``batch_size`` at a time (one at a time where the graph quantises dynamically)."""
        from thaw.modeling import length_sorted_batches

        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        out = None
        for batch in length_sorted_batches([len(x) for x in ids], 1 if self.rows_alone else batch_size):
            width = max(len(ids[i]) for i in batch)
            input_ids = np.zeros((len(batch), width), dtype=np.int64)
            attention = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                attention[row, : len(mask[i])] = mask[i]
            (pooled,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention})
            if out is None:
                out = np.zeros((len(ids), pooled.shape[1]), dtype=np.float32)
            out[batch] = pooled
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def export_encoder(encoder, tokenizer, pooling: str, path: Path) -> None:
    """Write ``encoder`` with its pooling as one ONNX file (dynamic batch and length)."""
    import warnings

    import torch

    from thaw.modeling import pool

    class Pooled(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool(hidden, attention_mask, pooling)

    example = tokenizer(["an example to trace"], return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "pooled": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(encoder.float().eval()),
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["pooled"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: one self-contained file, no onnxscript
        )


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantisation of ``source``'s matrix products, one scale
    per output channel. Measured on a CLINC150 classifier (1,280 test rows): 98.5% of its
    labels agree with PyTorch, against 96.9% with the defaults (per-tensor scales, the
    embedding lookups quantised too)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)  # its advice to pre-process, every call
    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
    )


@dataclass(frozen=True)
class OnnxReport:
    """What ``onnx.json`` records: the file kept (None: none), and why."""

    file: str | None
    variant: str | None  # "int8", "fp32" or None
    reason: str
    agreement_fp32: float | None = None
    agreement_int8: float | None = None
    accuracy_torch: float | None = None
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    rows: int = 0
    sha256: str | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def read_onnx_meta(model_dir: Path) -> dict | None:
    """``onnx/onnx.json`` of a model directory, checked: the file it names must be one of
    the two thaw writes, present, and match its recorded sha256; None when there is none."""
    meta_path = model_dir / ONNX_DIR / ONNX_META
    if not meta_path.is_file():
        return None
    try:
        meta = json_value(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{meta_path}: not readable JSON") from None
    name = meta.get("file") if isinstance(meta, dict) else None
    if name is None:
        return None
    if (name, meta.get("variant")) not in ((FP32_FILE, "fp32"), (INT8_FILE, "int8")):
        raise UserError(
            f"{meta_path}: names {str(name)[:80]!r} as {str(meta.get('variant'))[:20]!r}, not one of thaw's ONNX files"
        )
    path = model_dir / ONNX_DIR / name
    if not path.is_file() or file_sha256(path) != meta.get("sha256"):
        raise UserError(f"{path}: missing or changed since it was exported (sha256 does not match onnx.json)")
    return meta | {"path": str(path)}
