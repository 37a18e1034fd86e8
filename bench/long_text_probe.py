"""Frozen features of a whole long text, not its first 256 tokens: a measurement for a
feature thaw does not have, beside the first-window features thaw and the plain baseline
use, on the same rows in one run.

``python -m bench.long_text_probe spamassassin`` scrubs each text to the form thaw's
models see (``thaw.pii.masking``), cuts it to ``data.max_text_chars`` (2,000) as
curation does, and reads it in windows of 256 tokens (the backbone's own length, CLS and
SEP included), side by side in one batch. Two features of the same windows:

- first window: the mean of the first window's token states, what thaw and the plain
  baseline read today;
- all windows: the mean of every window's token states, each token counted once.

Each is fitted by logistic regression at the library defaults (C=1) on 10 training rows
per class (draws 13-22, ``bench.ladder.few_per_class``, as ``bench.ladder
SET:10shot:SEED`` draws them) and on all training rows, and scored on the test file:
test accuracy / macro-F1. Nothing is tuned on test. On sets of short texts (CLINC150,
GoEmotions) the two features are one, and the probe says so instead of scoring them.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench import ladder

DRAWS = tuple(range(13, 23))
WINDOW = 256
MAX_TEXT_CHARS = 2000  # thaw's data.max_text_chars default


def windows(texts: list[str], tokenizer) -> list[list[list[int]]]:
    """Each text's token ids in windows of ``WINDOW`` tokens, CLS and SEP included."""
    body = WINDOW - 2
    out = []
    for ids in tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]:
        pieces = [ids[i : i + body] for i in range(0, max(1, len(ids)), body)]
        out.append([[tokenizer.cls_token_id, *p, tokenizer.sep_token_id] for p in pieces])
    return out


def features(texts: list[str], tokenizer, model, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, float]:
    """(first-window features, all-window features, mean windows per text)."""
    import torch

    per_text = windows(texts, tokenizer)
    flat = [(t, k, w) for t, ws in enumerate(per_text) for k, w in enumerate(ws)]
    flat.sort(key=lambda item: len(item[2]))  # similar lengths batched together: less padding
    width = model.config.hidden_size
    sums, counts = np.zeros((len(texts), width)), np.zeros(len(texts))
    first = np.zeros((len(texts), width))
    with torch.inference_mode():
        for i in range(0, len(flat), batch_size):
            batch = flat[i : i + batch_size]
            longest = max(len(w) for _, _, w in batch)
            ids = torch.tensor([w + [tokenizer.pad_token_id] * (longest - len(w)) for _, _, w in batch])
            mask = torch.tensor([[1] * len(w) + [0] * (longest - len(w)) for _, _, w in batch])
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            summed = (hidden * mask.unsqueeze(-1)).sum(1).numpy()
            for row, (t, k, w) in enumerate(batch):
                sums[t] += summed[row]
                counts[t] += len(w)
                if k == 0:
                    first[t] = summed[row] / len(w)
    return first, sums / counts[:, None], float(np.mean([len(ws) for ws in per_text]))


def probe(name: str, encoder) -> list[str]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from thaw.config import PiiConfig
    from thaw.pii.masking import mask_texts

    tokenizer, model = encoder
    splits = ladder.SETS[name][1]()
    served = lambda rows: [t[:MAX_TEXT_CHARS] for t in mask_texts([t for t, _ in rows], PiiConfig())]  # noqa: E731
    started = time.perf_counter()
    test = splits["test"]
    first_test, all_test, per_test = features(served(test), tokenizer, model)
    y_test = np.asarray([y for _, y in test])
    lines = [
        f"{name}: {len(test)} test rows scrubbed and read in {time.perf_counter() - started:.0f} s, "
        f"{per_test:.2f} windows of {WINDOW} tokens a text"
    ]
    print(lines[0], flush=True)
    if per_test < 1.01:
        lines.append(f"{name}: its texts fit one window; the two features are one")
        print(lines[-1], flush=True)
        return lines
    draws = [(f"draw {seed}", ladder.few_per_class(splits["train"], 10, seed)) for seed in DRAWS]
    gains = []
    for title, rows in [*draws, ("all rows", splits["train"])]:
        first, whole, _ = features(served(rows), tokenizer, model)
        y = np.asarray([label for _, label in rows])
        scored = []
        for x, x_test in ((first, first_test), (whole, all_test)):
            predicted = LogisticRegression(max_iter=1000).fit(x, y).predict(x_test)
            scored.append((accuracy_score(y_test, predicted), f1_score(y_test, predicted, average="macro")))
        if title != "all rows":
            gains.append(scored[1][0] - scored[0][0])
        lines.append(
            f"{name} {title} ({len(rows)} rows): first window {scored[0][0]:.4f}/{scored[0][1]:.4f}; "
            f"all windows {scored[1][0]:.4f}/{scored[1][1]:.4f}; all minus first {scored[1][0] - scored[0][0]:+.4f}"
        )
        print(lines[-1], flush=True)
    se = float(np.std(gains, ddof=1) / np.sqrt(len(gains)))
    lines.append(f"{name} 10 per class, {len(gains)} draws: all minus first {np.mean(gains):+.4f} (se {se:.4f})")
    print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(ladder.probe_sets(sys.argv[1:], probe))
