"""Word features saved as JSON and safetensors rebuild the columns they were fitted with;
the files are input, so anything thaw would not have written is refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thaw.modeling import head_probabilities
from thaw.words import WORDS_JSON, WORDS_TENSORS, WordFeatures, WordSettings, unit_rows


def combined(features: np.ndarray, words):
    """The matrix scikit-learn would be given for a head over both: unit-length features
    beside the word features."""
    from scipy.sparse import csr_matrix, hstack

    return hstack([csr_matrix(unit_rows(features)), words]).tocsr()


TEXTS = ["refund my card please", "the parcel is late", "reset my password", "Zahlung zurück\u00a0bitte"]


def test_saved_word_features_give_the_same_rows_and_no_pickle(tmp_path):
    fitted = WordFeatures.fit(TEXTS, WordSettings(max_features=200))
    fitted.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WORDS_JSON, WORDS_TENSORS])
    loaded = WordFeatures.load(tmp_path)
    unseen = ["refund the parcel", "passwort vergessen", "", "x" * 100_000]
    a, b = fitted.transform(unseen).toarray(), loaded.transform(unseen).toarray()
    assert loaded.width == fitted.width == a.shape[1] and np.array_equal(a, b)
    norms = np.linalg.norm(fitted.transform(TEXTS).toarray(), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)  # two unit blocks, scaled by 1/sqrt(2)


def test_a_keyed_pseudonym_reads_as_its_entity_type_as_served_text_does():
    # curated training text keeps keyed pseudonyms; served text is scrubbed to entity types
    fitted = WordFeatures.fit(["<PERSON_8b1531> wants a refund", "<PERSON_0c99aa> lost the card"])
    assert not any("8b1531" in t for v in fitted.vectorisers for t in v.vocabulary_)
    trained = fitted.transform(["<PERSON_8b1531> wants a refund"]).toarray()
    assert np.array_equal(trained, fitted.transform(["<PERSON> wants a refund"]).toarray())


def test_a_head_over_features_and_words_scores_as_one_linear_model(tmp_path):
    words = WordFeatures.fit(TEXTS, WordSettings(max_features=50))
    x = np.random.default_rng(0).normal(size=(len(TEXTS), 8)).astype(np.float32)
    rng = np.random.default_rng(1)
    head = {
        "weight": rng.normal(size=(3, 8)).astype(np.float32),
        "words_weight": rng.normal(size=(3, words.width)).astype(np.float32),
        "bias": rng.normal(size=3).astype(np.float32),
    }
    w = words.transform(TEXTS)
    probs = head_probabilities(x, head, w)
    whole = combined(x, w) @ np.concatenate([head["weight"], head["words_weight"]], axis=1).T + head["bias"]
    expected = np.exp(whole - whole.max(1, keepdims=True))
    assert np.allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-5)
    assert np.allclose(np.linalg.norm(unit_rows(x), axis=1), 1.0)
    with pytest.raises(ValueError, match="word features"):
        head_probabilities(x, head)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda meta: meta[:1], "expected 2 analysers"),
        (lambda meta: [{**meta[0], "analyzer": "char"}, meta[1]], "analyser 0 is 'char'"),
        (lambda meta: [{**meta[0], "ngram_range": [1, "2"]}, meta[1]], "ngram_range"),
        (lambda meta: [{**meta[0], "ngram_range": [3, 1]}, meta[1]], "ngram_range"),
        (lambda meta: [{**meta[0], "vocabulary": {"a": 0}}, meta[1]], "vocabulary"),
        (lambda meta: [{**meta[0], "vocabulary": [1, 2]}, meta[1]], "vocabulary"),
        (lambda meta: [{**meta[0], "vocabulary": meta[0]["vocabulary"][:-1]}, meta[1]], "idf_0 does not match"),
    ],
)
def test_word_files_thaw_would_not_write_are_refused_by_name(tmp_path, damage, message):
    WordFeatures.fit(TEXTS, WordSettings(max_features=100)).save(tmp_path)
    path = tmp_path / WORDS_JSON
    path.write_text(json.dumps(damage(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as refused:
        WordFeatures.load(tmp_path)
    assert tmp_path.name in str(refused.value)


@pytest.mark.parametrize("classes", [["a", "b", "c", "unseen"], ["a", "b"]])
@pytest.mark.parametrize("row_space_max_rows", [0, 10_000], ids=["on the columns", "in the rows' span"])
def test_the_words_solver_finds_scikit_learns_weights(classes, row_space_max_rows):
    # the same objective as LogisticRegression(lbfgs) on combined(): the same head, solved
    # for on the word columns or in the span of the rows (60 rows, more word columns); two
    # classes as scikit-learn's one binary row; a class with no rows never predicted
    from sklearn.linear_model import LogisticRegression

    from thaw.heads import linear_head_of
    from thaw.words import fit_logistic

    rng = np.random.default_rng(0)
    seen = [c for c in classes if c != "unseen"]
    y = [seen[i % len(seen)] for i in range(60)]
    texts = [f"{label} {' '.join(rng.choice(['x', 'yy', 'zzz', 'note', 'bill'], 4))}" for label in y]
    features = rng.normal(size=(60, 8)) + np.asarray([[seen.index(label)] * 8 for label in y]) * 0.3
    words = WordFeatures.fit(texts, WordSettings(max_features=100))
    assert words.width > len(texts)
    head = fit_logistic(features, words.transform(texts), y, tuple(classes), 0.5, 5000, 1e-9, row_space_max_rows)
    clf = LogisticRegression(C=0.5, max_iter=5000, tol=1e-9).fit(combined(features, words.transform(texts)), y)
    weight, bias = linear_head_of(clf, tuple(classes), 8 + words.width)
    assert np.allclose(head["weight"], weight[:, :8], atol=1e-3)
    assert np.allclose(head["words_weight"], weight[:, 8:], atol=1e-3)
    assert np.allclose(head["bias"], bias, atol=1e-3)
    probabilities = head_probabilities(features, head, words.transform(texts))
    expected = clf.predict_proba(combined(features, words.transform(texts)))
    assert np.allclose(probabilities[:, : len(seen)], expected, atol=1e-4)
    assert np.all(probabilities[:, len(seen) :] < 1e-12)


def test_fitting_and_transforming_at_once_gives_the_rows_transform_gives():
    fitted, rows = WordFeatures.fit_transform(TEXTS, WordSettings(max_features=200))
    assert np.array_equal(rows.toarray(), fitted.transform(TEXTS).toarray())
