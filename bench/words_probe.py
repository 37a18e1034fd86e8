"""Words beside frozen features, at 10 per class: a measurement for a head thaw does not
have yet, beside the plain baseline, on the same rows in one run.

``python -m bench.words_probe spamassassin clinc150 goemotions`` draws 10 training rows
per class (seeds 13-17, ``bench.ladder.few_per_class``) and scores on each set's test
file:

- the plain baseline (``bench.plain_baseline``: raw text, frozen MiniLM, logistic
  regression at the library defaults);
- the same recipe on the text form thaw's models see (PII scrubbed to entity types,
  ``thaw.pii.masking``);
- TF-IDF word (1-2) and character (2-5) n-grams + logistic regression on that form;
- the mean of those two models' class probabilities;
- one logistic regression on both, side by side (features scaled to unit length).

Nothing is tuned on test: every setting is fixed before the run (C=1 for the embedding
models, C=10 for the word models, whose TF-IDF rows are unit length and so need less
regularising), and the figures are test accuracy / macro-F1. The head that would use
this must choose among them by cross-validation, as the frozen rung chooses C.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench import ladder, plain_baseline

DRAWS = (13, 14, 15, 16, 17)
WORD_FEATURES = 20_000  # per vectoriser


def _words(train_texts: list[str]):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorisers = [
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=WORD_FEATURES),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=WORD_FEATURES),
    ]
    fitted = hstack([v.fit_transform(train_texts) for v in vectorisers]).tocsr() / np.sqrt(2)
    return fitted, lambda texts: hstack([v.transform(texts) for v in vectorisers]).tocsr() / np.sqrt(2)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def probe(name: str, encoder) -> list[str]:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    from thaw.config import PiiConfig
    from thaw.pii.masking import mask_texts

    splits = ladder.SETS[name][1]()
    test = splits["test"]
    started = time.perf_counter()
    raw_test = [t for t, _ in test]
    served_test = mask_texts(raw_test, PiiConfig())
    x_raw_test = plain_baseline.embed(raw_test, *encoder)
    x_test = plain_baseline.embed(served_test, *encoder)
    y_test = np.asarray([y for _, y in test])
    lines = [f"{name}: {len(test)} test rows scrubbed and embedded twice in {time.perf_counter() - started:.0f} s"]
    print(lines[0], flush=True)
    for seed in DRAWS:
        rows = ladder.few_per_class(splits["train"], 10, seed)  # the draws of bench.ladder SET:10shot:SEED
        raw = [t for t, _ in rows]
        served = mask_texts(raw, PiiConfig())
        y = np.asarray([label for _, label in rows])
        baseline = LogisticRegression(max_iter=1000).fit(plain_baseline.embed(raw, *encoder), y)
        x = plain_baseline.embed(served, *encoder)
        frozen = LogisticRegression(max_iter=1000).fit(x, y)
        w, transform = _words(served)
        w_test = transform(served_test)
        words = LogisticRegression(C=10.0, max_iter=2000).fit(w, y)
        both = LogisticRegression(C=10.0, max_iter=2000).fit(hstack([csr_matrix(_unit(x)), w]).tocsr(), y)
        mean = (frozen.predict_proba(x_test) + words.predict_proba(w_test)) / 2
        predicted = {
            "plain baseline (raw text)": baseline.predict(x_raw_test),
            "frozen + LR, scrubbed": frozen.predict(x_test),
            "words + LR": words.predict(w_test),
            "mean of the two": frozen.classes_[mean.argmax(1)],
            "one LR on both": both.predict(hstack([csr_matrix(_unit(x_test)), w_test]).tocsr()),
        }
        scores = [
            f"{k} {accuracy_score(y_test, p):.4f}/{f1_score(y_test, p, average='macro'):.4f}"
            for k, p in predicted.items()
        ]
        lines.append(f"{name} draw {seed}: " + "; ".join(scores))
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(ladder.probe_sets(sys.argv[1:], probe))
