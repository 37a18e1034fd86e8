"""Word features beside the frozen encoder's: TF-IDF over word (1-2) and character (2-5)
n-grams of the model's text form (``thaw.text_form.model_text``, applied here to what
fitting and serving give alike: keyed pseudonyms read as their entity type), kept as
plain data so a served model rebuilds exactly the columns it learned: the vocabulary in
column order as JSON, the idf weights as safetensors, no pickles.

Why: at 10 per class on SpamAssassin the TF-IDF yardstick outscored every encoder rung in
the folds, and one logistic regression on unit-length frozen features beside word
n-grams scored above frozen features alone on SpamAssassin, CLINC150 and GoEmotions
(``python -m bench.words_probe``, docs/benchmarks.md, "Words beside the frozen features").

A head over both sees the encoder's features scaled to unit length and
the two TF-IDF blocks each of unit length, scaled by 1/sqrt(2) so the word block is of
unit length too: neither side outweighs the other by its scale alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thaw.parse import json_value
from thaw.text_form import model_text

WORDS_JSON = "words.json"
WORDS_TENSORS = "words.safetensors"
_ANALYSERS = ("word", "char_wb")
_MAX_VOCABULARY = 1_000_000  # a words.json past this is not one thaw wrote


@dataclass(frozen=True)
class WordSettings:
    """The n-gram ranges and how many of the most frequent n-grams each analyser keeps."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    max_features: int = 20_000


class WordFeatures:
    """Fitted TF-IDF vectorisers (word, then character n-grams); ``transform`` gives one
    sparse row per text, of unit length (or zero for a text with no known n-gram)."""

    def __init__(self, vectorisers: Sequence) -> None:
        self.vectorisers = tuple(vectorisers)

    @classmethod
    def fit(cls, texts: Sequence[str], settings: WordSettings = WordSettings()) -> WordFeatures:
        return cls.fit_transform(texts, settings)[0]

    @classmethod
    def fit_transform(cls, texts: Sequence[str], settings: WordSettings = WordSettings()):
        """(fitted features, ``transform(texts)``), the texts read once."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        ranges = (settings.word_ngrams, settings.char_ngrams)
        vectorisers = [
            TfidfVectorizer(analyzer=a, ngram_range=tuple(r), sublinear_tf=True, max_features=settings.max_features)
            for a, r in zip(_ANALYSERS, ranges, strict=True)
        ]
        form = [model_text(t) for t in texts]
        return cls(vectorisers), _stacked([v.fit_transform(form) for v in vectorisers])

    @property
    def width(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorisers)

    def transform(self, texts: Sequence[str]):
        form = [model_text(t) for t in texts]  # as fit read them
        return _stacked([v.transform(form) for v in self.vectorisers])

    def save(self, directory: Path) -> None:
        """``words.json`` (analysers, n-gram ranges, vocabularies in column order) and
        ``words.safetensors`` (each analyser's idf weights) in ``directory``."""
        from safetensors.numpy import save_file

        meta = [
            {
                "analyzer": v.analyzer,
                "ngram_range": list(v.ngram_range),
                "vocabulary": sorted(v.vocabulary_, key=v.vocabulary_.get),
            }
            for v in self.vectorisers
        ]
        (directory / WORDS_JSON).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        save_file(
            {f"idf_{i}": v.idf_.astype(np.float64) for i, v in enumerate(self.vectorisers)},
            str(directory / WORDS_TENSORS),
        )

    @classmethod
    def load(cls, directory: Path) -> WordFeatures:
        """The vectorisers ``save`` wrote; the files are input, so anything thaw would not
        have written raises ValueError naming the file."""
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import TfidfVectorizer

        path = directory / WORDS_JSON
        meta = json_value(path.read_text(encoding="utf-8"))
        idf = load_file(str(directory / WORDS_TENSORS))
        if not isinstance(meta, list) or len(meta) != len(_ANALYSERS):
            raise ValueError(f"{path}: expected {len(_ANALYSERS)} analysers")
        vectorisers = []
        for i, (entry, analyser) in enumerate(zip(meta, _ANALYSERS, strict=True)):
            vocabulary, ngrams = entry.get("vocabulary"), entry.get("ngram_range")
            weights = idf.get(f"idf_{i}")
            if entry.get("analyzer") != analyser:
                raise ValueError(f"{path}: analyser {i} is {str(entry.get('analyzer'))[:40]!r}, not {analyser!r}")
            if not (
                isinstance(ngrams, list)
                and len(ngrams) == 2
                and all(type(n) is int and 1 <= n <= 10 for n in ngrams)
                and ngrams[0] <= ngrams[1]
            ):
                raise ValueError(f"{path}: analyser {i}'s ngram_range is not two integers from 1 to 10")
            if not (
                isinstance(vocabulary, list)
                and 0 < len(vocabulary) <= _MAX_VOCABULARY
                and all(isinstance(t, str) for t in vocabulary)
                and len(set(vocabulary)) == len(vocabulary)
            ):
                raise ValueError(f"{path}: analyser {i}'s vocabulary is not a list of distinct strings")
            if weights is None or weights.shape != (len(vocabulary),) or not np.all(np.isfinite(weights)):
                raise ValueError(f"{directory / WORDS_TENSORS}: idf_{i} does not match the vocabulary in {path}")
            v = TfidfVectorizer(analyzer=analyser, ngram_range=tuple(ngrams), sublinear_tf=True, vocabulary=vocabulary)
            v.idf_ = weights
            vectorisers.append(v)
        return cls(vectorisers)


def _stacked(blocks: list):
    """The analysers' blocks side by side, scaled so a row is of unit length."""
    from scipy.sparse import hstack

    return (hstack(blocks).tocsr() / math.sqrt(len(blocks))).astype(np.float32)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def words_logits(features: np.ndarray, words, head: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of a head over both: ``weight`` on the unit-length features, ``words_weight``
    on the word features, ``bias``."""
    return unit_rows(features) @ head["weight"].T + np.asarray(words @ head["words_weight"].T) + head["bias"]


# Up to this many rows (and fewer rows than word columns) the words head is fit in the
# word block's row space (``_row_space``). Measured on CLINC150 (random 384-wide features,
# C=10, one thread): 1,191 rows (draw 13 at 10 per class), 18,671 word columns: 0.96-1.01 s
# in the row space against 2.6-6.1 s on the columns over four runs, the same weights; rows
# drawn from all of CLINC150, one run each: 2,500 rows 6.4 s against 14.1 s, 5,000 rows
# 38.5 s against 18.9 s (the n x n eigendecomposition alone 23.7 s of them).
ROW_SPACE_MAX_ROWS = 3000


def fit_logistic(
    features: np.ndarray,
    words,
    y: Sequence[str],
    labels: tuple[str, ...],
    c: float,
    max_iter: int,
    tol: float = 1e-4,
    row_space_max_rows: int = ROW_SPACE_MAX_ROWS,
) -> dict[str, np.ndarray]:
    """A head over both (``weight``, ``words_weight``, ``bias``, rows in ``labels``
    order): the logistic regression scikit-learn's lbfgs solver fits at ``c`` on the
    unit-length features beside ``words`` as one sparse matrix (the same objective,
    scaling and stopping rule, so the same weights), in less of its time: the encoder's
    block stays dense for the BLAS, where that solver would multiply it as sparse
    columns, three quarters of the nonzeros; and with fewer rows than word columns (up to
    ``row_space_max_rows`` rows) the word weights are solved for in the rows' span
    (``_row_space``), a problem of rows, not columns, in size.

    Two classes are fit as two softmax rows at ``c / 2``, which is scikit-learn's single
    binary row at ``c``. A class with no row here is never predicted (bias -1e4).

    Started from zero, as scikit-learn starts. Not from the features-only head's weights:
    the stopping rule reads the gradient of the mean loss, already under ``tol`` there on
    a few thousand rows, so the fit stops where it starts (on all of CLINC150, validation
    accuracy 0.9600 against 0.9680 from zero, on the plain baseline's fp32 features; a
    /tmp script at a8b6a33)."""
    seen = set(y)
    present = [label for label in labels if label in seen]
    if len(present) < 2:
        raise ValueError(f"a classifier needs two classes; these rows hold {len(present)}")
    index = {label: i for i, label in enumerate(present)}
    dense = unit_rows(features).astype(np.float64)
    sparse = words.astype(np.float64).tocsr()
    n, d, k = dense.shape[0], dense.shape[1], len(present)
    target = np.zeros((n, k))
    target[np.arange(n), [index[label] for label in y]] = 1.0
    strength = 1.0 / ((c / 2 if k == 2 else c) * n)  # scikit-learn's l2_reg_strength, per mean row loss
    if n <= row_space_max_rows and n < sparse.shape[1]:
        coordinates, to_words = _row_space(sparse)
        no_columns = sparse[:, :0]  # the word block is in ``coordinates`` now
        w, _, b = _minimise(np.hstack([dense, coordinates]), no_columns, target, strength, max_iter, tol)
        fitted_dense, fitted_words = w[:, :d], to_words(w[:, d:])
    else:
        fitted_dense, fitted_words, b = _minimise(dense, sparse, target, strength, max_iter, tol)
    rows = [labels.index(label) for label in present]  # the classes fitted, in labels order
    weight = np.zeros((len(labels), d), dtype=np.float32)
    words_weight = np.zeros((len(labels), sparse.shape[1]), dtype=np.float32)
    bias = np.full(len(labels), -1e4, dtype=np.float32)
    weight[rows], words_weight[rows], bias[rows] = fitted_dense, fitted_words, b
    return {"weight": weight, "words_weight": words_weight, "bias": bias}


def _row_space(sparse):
    """(coordinates, to_words): the rows of ``sparse`` in an orthonormal basis of their
    span, and the map from weights on those coordinates back to weights on the columns.

    Why it is the same problem: the loss reads the word weights ``W`` only through
    ``sparse @ W.T``, so a part of ``W`` orthogonal to every row changes no logit and only
    adds to the L2 penalty; the optimum has none, and in an orthonormal basis ``Q`` of the
    rows' span (``W = U Q.T``) the logits are ``(sparse @ Q) @ U.T`` and the penalty
    ``|U|^2``. The gradients lie in that span too, so lbfgs, started from zero, takes the
    steps it takes on the columns; only its stopping test, the largest gradient component,
    reads other components. From the Gram matrix ``sparse @ sparse.T = V diag(s) V.T``:
    ``Q = sparse.T @ V / sqrt(s)``, so ``sparse @ Q = V * sqrt(s)`` and ``W = (U / sqrt(s))
    @ V.T @ sparse``; directions of eigenvalue below 1e-10 of the largest (repeated rows)
    are dropped."""
    values, vectors = np.linalg.eigh((sparse @ sparse.T).toarray())
    kept = values > values.max() * 1e-10
    scale, vectors = np.sqrt(values[kept]), vectors[:, kept]
    return vectors * scale, lambda u: np.asarray(((u / scale) @ vectors.T) @ sparse)


def _minimise(dense: np.ndarray, sparse, target: np.ndarray, strength: float, max_iter: int, tol: float):
    """(dense weights, sparse weights, bias) minimising the mean softmax loss over
    ``dense`` beside ``sparse`` (which may have no columns) + ``strength`` / 2 |weights|^2,
    by scipy's L-BFGS-B with scikit-learn's settings.

    The parameters are held feature by feature, the classes side by side ((d, k), (v, k),
    then the k biases), so both sparse products read and write contiguous blocks and the
    gradient is written into one new array, never transposed or concatenated: on all of
    CLINC150 the word weights alone are 40,000 x 150 values. The order of the parameters
    changes nothing L-BFGS computes but the order of its sums."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    (n, d), v, k = dense.shape, sparse.shape[1], target.shape[1]
    sparse = sparse.tocsr()
    sparse_t = sparse.T.tocsr()
    dense_t = np.ascontiguousarray(dense.T)

    def split(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return theta[: d * k].reshape(d, k), theta[d * k : (d + v) * k].reshape(v, k), theta[(d + v) * k :]

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wd, ws, b = split(theta)
        z = dense @ wd
        if v:
            z += sparse @ ws
        z += b
        lse = logsumexp(z, axis=1)
        loss = (lse.sum() - np.vdot(z, target)) / n + 0.5 * strength * (np.vdot(wd, wd) + np.vdot(ws, ws))
        g = z  # the loss no longer needs z: the gradient of the mean loss in the logits, in place
        np.subtract(z, lse[:, None], out=g)
        np.exp(g, out=g)
        g -= target
        g /= n
        grad = np.empty_like(theta)
        gd, gs, gb = split(grad)
        np.matmul(dense_t, g, out=gd)
        gd += strength * wd
        if v:
            np.multiply(ws, strength, out=gs)
            gs += sparse_t @ g
        g.sum(axis=0, out=gb)
        return loss, grad

    fitted = minimize(
        loss_and_gradient,
        np.zeros(k * (d + v + 1)),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
    ).x
    wd, ws, b = split(fitted)
    return np.ascontiguousarray(wd.T), np.ascontiguousarray(ws.T), b.copy()
