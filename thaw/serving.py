"""The registered model: an MLflow pyfunc that loads a thaw model directory.

The directory holds the head (safetensors), the labels and ``model.json`` with the
backbone reference (name, source, revision digest). The backbone itself is not copied
into the registry: it is located offline at load time and its digest re-checked, so
one base backbone serves every version built on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from thaw.config import BackboneConfig
from thaw.modeling import BackboneRef, configure_threads, embed_texts, load_encoder, locate_backbone, select_device, softmax_head

MODEL_ARTIFACT = "thaw_model"


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
        from safetensors.numpy import load_file

        directory = Path(context.artifacts[MODEL_ARTIFACT])
        self.meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        self.labels = json.loads((directory / "labels.json").read_text(encoding="utf-8"))
        head = load_file(str(directory / "head.safetensors"))
        self.weight, self.bias = head["weight"], head["bias"]
        ref = BackboneRef(**self.meta["backbone"])
        configure_threads()
        self.device = select_device()
        self.tokenizer, self.encoder = load_encoder(locate_backbone(ref), self.device)
        self.backbone_cfg = BackboneConfig(name=ref.name, pooling=self.meta["pooling"], max_length=self.meta["max_length"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        texts = _texts(model_input)
        features = embed_texts(texts, self.tokenizer, self.encoder, self.backbone_cfg, self.device)
        probs = softmax_head(features, self.weight, self.bias)
        best = probs.argmax(1)
        return pd.DataFrame({"label": [self.labels[i] for i in best], "confidence": probs[np.arange(len(best)), best].astype(float)})
