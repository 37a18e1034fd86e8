"""Loading and running a thaw model directory, and the MLflow pyfunc around it.

A model directory holds ``model.json`` (rung, pooling, max length and the backbone
reference: name, source, revision digest), ``labels.json``, ``head.safetensors`` and,
for adapted rungs, either a PEFT ``adapter/`` or ``delta.safetensors`` (the backbone
tensors the rung changed); a frozen head over word n-grams too has ``words.json`` and
``words.safetensors`` (``thaw.words``). The base backbone is never copied: it is located offline
and its digest re-checked, so one base backbone serves every version built on it.

What it is given is scrubbed the way its training text was (``model.json``'s
``input_form``, ``thaw.pii.masking``): PII becomes entity types before the encoder sees it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from thaw.config import BackboneConfig
from thaw.errors import UserError
from thaw.modeling import (
    BackboneRef,
    check_max_length,
    configure_threads,
    embed_texts,
    encode_texts,
    head_probabilities,
    head_problem,
    hidden_size,
    load_encoder,
    load_tokenizer,
    locate_backbone,
    select_device,
)
from thaw.parse import json_value
from thaw.pii.masking import detector_for, mask_texts, served_max_chars, served_pii_config
from thaw.shown import one_line

MODEL_ARTIFACT = "thaw_model"
ALLOWED_BACKBONES_ENV = "THAW_ALLOWED_BACKBONES"  # JSON list of backbone sources, set by `thaw serve`


class ThawPredictor:
    """A loaded model directory: ``predict(texts)`` gives labels and confidences."""

    def __init__(
        self, directory: Path, allowed_backbones: frozenset[str] | None = None, use_onnx: bool | None = None
    ) -> None:
        """Load the model in ``directory``; with ``allowed_backbones``, refuse (UserError) a
        model whose backbone source is not among them, and load safetensors weights only.
        Its ONNX artifact (``thaw.onnx_export``) runs the encoder when there is one, unless
        ``use_onnx`` is False or ``THAW_ONNX=0``."""
        from safetensors.numpy import load_file

        from thaw.onnx_export import OnnxEncoder, onnx_enabled, read_onnx_meta

        self.meta, self.labels = read_model_json(directory)
        self.head = load_file(str(directory / "head.safetensors"))
        ref = self.ref = BackboneRef(**self.meta["backbone"])
        if allowed_backbones is not None and ref.source not in allowed_backbones:
            raise UserError(
                f"{directory.name}: its backbone comes from {ref.source[:200]!r}, which this configuration does not "
                "allow (thaw's packaged backbones and backbone.path)"
            )
        configure_threads()
        self.device = select_device()
        safetensors_only = allowed_backbones is not None
        self.session, self.engine = None, "pytorch"
        onnx = read_onnx_meta(directory) if (use_onnx if use_onnx is not None else onnx_enabled()) else None
        backbone_dir = locate_backbone(ref)
        # the head is input too: one that does not fit fails on the first request, not here
        if problem := head_problem(self.head, len(self.labels), hidden_size(backbone_dir)):
            raise UserError(f"{directory.name}/head.safetensors: {problem}")
        self.backbone_cfg = BackboneConfig(
            name=ref.name, pooling=self.meta["pooling"], max_length=self.meta["max_length"]
        )
        # model.json is input: a length past the backbone would fail on the first long
        # request; refused before any weights are loaded
        check_max_length(backbone_dir, self.backbone_cfg)
        self.words = None
        if "words_weight" in self.head:  # a frozen head over word n-grams too (thaw.words)
            from thaw.words import WORDS_JSON, WordFeatures

            if not (directory / WORDS_JSON).is_file():
                raise UserError(f"{directory.name}: its head reads word features, and {WORDS_JSON} is missing")
            try:
                self.words = WordFeatures.load(directory)
            except (ValueError, OSError, json.JSONDecodeError) as error:
                raise UserError(f"{directory.name}: {str(error)[:300]}") from None
            if self.words.width != self.head["words_weight"].shape[1]:
                raise UserError(f"{directory.name}: {WORDS_JSON} does not match the head's word columns")
        if onnx is not None:
            self.tokenizer, self.encoder = load_tokenizer(backbone_dir), None
            self.use_session(OnnxEncoder(Path(onnx["path"])), f"onnxruntime {onnx['variant']}")
        else:
            self.tokenizer, self.encoder = load_encoder(backbone_dir, self.device, safetensors_only)
            self.encoder = apply_adaptation(self.encoder, directory, self.device)
        # scrub what it is given as its training text was scrubbed (thaw.pii.masking)
        self.pii = served_pii_config(self.meta.get("input_form"), f"{directory.name}/model.json")
        # and cut as its training text was cut (data.max_text_chars), after scrubbing
        self.max_chars = served_max_chars(self.meta.get("input_form"), f"{directory.name}/model.json")
        if self.pii is not None:
            detector_for(self.pii)  # loaded with the model, not on the first request

    def use_session(self, session, engine: str = "onnxruntime") -> None:
        """Run the encoder through ``session`` (``thaw.onnx_export.OnnxEncoder``) from now on."""
        self.session, self.engine = session, engine

    def model_inputs(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as the model sees them: PII replaced by entity types, cut to the
        training rows' length."""
        return mask_texts(texts, self.pii, self.max_chars)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        inputs = self.model_inputs(texts)
        if self.session is not None:
            encoded = encode_texts(self.tokenizer, inputs, self.backbone_cfg.max_length)
            features = self.session.embed(encoded, self.backbone_cfg.batch_size)
        else:
            features = embed_texts(inputs, self.tokenizer, self.encoder, self.backbone_cfg, self.device)
        return head_probabilities(features, self.head, self.words.transform(inputs) if self.words else None)

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        probs = self.probabilities(texts)
        best = probs.argmax(1)
        return pd.DataFrame(
            {"label": [self.labels[i] for i in best], "confidence": probs[np.arange(len(best)), best].astype(float)}
        )


def read_model_json(directory: Path) -> tuple[dict, list[str]]:
    """``model.json`` and ``labels.json`` of a model directory, checked as input (a stored
    model's files are whoever registered it's): UserError naming the file and what in it is
    not what thaw writes, before anything is loaded from them."""

    def read(name: str):
        try:
            return json_value((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise UserError(f"{directory.name}/{name}: unreadable ({one_line(exc, 120)})") from None

    meta, labels = read("model.json"), read("labels.json")
    backbone = meta.get("backbone") if isinstance(meta, dict) else None
    if not isinstance(backbone, dict) or set(backbone) != {"name", "source", "revision"}:
        raise UserError(f"{directory.name}/model.json: no backbone with a name, source and revision")
    if not all(isinstance(v, str) and 0 < len(v) <= 500 for v in backbone.values()):
        raise UserError(f"{directory.name}/model.json: the backbone's name, source and revision must be short text")
    try:
        BackboneConfig(name=backbone["name"], pooling=meta.get("pooling"), max_length=meta.get("max_length"))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise UserError(f"{directory.name}/model.json: {one_line(exc, 200)}") from None
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and len(label) <= 1000 for label in labels)
    ):
        raise UserError(f"{directory.name}/labels.json: not a list of class names")
    return meta, labels


ADAPTER_TYPES = ("LORA", "IA3")  # PEFT's names of the adapters the peft rung saves (BitFit saves a delta)


def apply_adaptation(encoder, directory: Path, device):
    """The base encoder with the rung's adapter or changed tensors applied (eval mode).

    An adapter that can be merged (LoRA) is merged into the weights: the served encoder is
    then the base architecture with other numbers, at the frozen rung's cost, instead of
    paying for the adapter's extra matrix products on every request."""
    if (directory / "adapter").is_dir():
        from peft import PeftModel

        where = f"{directory.name}/adapter/adapter_config.json"
        try:
            config = json_value((directory / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{where}: unreadable ({one_line(exc, 120)})") from None
        if not isinstance(config, dict) or config.get("peft_type") not in ADAPTER_TYPES:
            raise UserError(f"{where}: not an adapter thaw trains ({', '.join(ADAPTER_TYPES)})")
        try:  # the rest of it is PEFT's to read, and whoever registered the version's to write
            adapted = PeftModel.from_pretrained(encoder, directory / "adapter")
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"{type(exc).__name__}: {one_line(exc, 160)}"
            raise UserError(f"{where}: not an adapter for this backbone ({problem})") from None
        adapted = adapted.to(device).eval()
        try:
            return adapted.merge_and_unload().eval()
        except (AttributeError, ValueError, NotImplementedError):  # an adapter type that cannot merge
            return adapted
    delta = directory / "delta.safetensors"
    if delta.is_file():
        from safetensors.torch import load_file

        changed = load_file(str(delta))
        base = encoder.state_dict()
        # the file is whoever registered the version's: a tensor the backbone lacks, or one
        # of another shape, is refused in a line before any weight changes
        where = f"{directory.name}/{delta.name}"
        missing = sorted(set(changed) - set(base))
        if missing:
            raise UserError(f"{where}: tensors {missing[:3]} do not exist in the backbone")
        reshaped = sorted(k for k, v in changed.items() if v.shape != base[k].shape)
        if reshaped:
            raise UserError(f"{where}: tensors {reshaped[:3]} do not have the backbone's shape")
        encoder.load_state_dict(changed, strict=False)
    return encoder.eval()


def _texts(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        return model_input[column].astype(str).tolist()
    if isinstance(model_input, (list, tuple, np.ndarray, pd.Series)):
        return [str(t) for t in model_input]
    if isinstance(model_input, str):
        return [model_input]
    raise TypeError(f"expected a DataFrame with a 'text' column or a list of strings, got {type(model_input).__name__}")


class ThawTextClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc: text in, ``label`` and ``confidence`` out."""

    def load_context(self, context) -> None:
        # `thaw serve` names the backbones its config allows; the model's own word is not enough
        allowed = os.environ.get(ALLOWED_BACKBONES_ENV)
        self.predictor = ThawPredictor(
            Path(context.artifacts[MODEL_ARTIFACT]), frozenset(json.loads(allowed)) if allowed else None
        )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict(_texts(model_input))
