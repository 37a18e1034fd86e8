"""bench.head_choice cross-validates the frozen rung's candidate heads with the rung's
own fits and folds: on two rows per class and on a hundred, every candidate is scored
and every rule chooses one of them."""

from __future__ import annotations

import numpy as np
import pytest

from bench.head_choice import FEATURE_WEIGHTS, _choices, _cross_validated, _fitter, _within_one_se, _words_name, draws
from thaw.config import ThawConfig


@pytest.mark.parametrize("per_class", [2, 100])
def test_every_candidate_is_cross_validated_and_every_rule_chooses_one(per_class):
    rng = np.random.default_rng(0)
    cfg = ThawConfig()
    words = {"spam": "win cash prize now", "ham": "meeting notes attached"}
    texts = [f"{words[label]} {rng.integers(1000)}" for label in words for _ in range(per_class)]
    y = np.asarray([label for label in words for _ in range(per_class)])
    labels = tuple(sorted(words))
    x = rng.normal(size=(len(y), 8)).astype(np.float32)  # features that carry nothing
    fit = _fitter(labels, cfg)
    runs = _cross_validated(x, texts, y, labels, fit, cfg)
    assert set(runs) == {*cfg.training.head.c_grid, *(_words_name(w) for w in FEATURE_WEIGHTS)}
    assert all(r.fold_losses and np.isfinite(list(r.fold_losses.values())).all() for r in runs.values())
    chosen = _choices(runs, cfg.training.head.c_grid)
    assert set(chosen.values()) <= set(runs)
    if per_class == 100:  # the words decide the class; the features are noise
        assert np.mean(list(runs[_words_name(1.0)].fold_scores.values())) == 1.0
        assert all(isinstance(s, str) for s in chosen.values())
    probabilities = fit(x, texts, y)[_words_name(0.5)](x[:3], texts[:3])
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(1), 1)


def test_a_lead_within_one_standard_error_goes_to_the_lower_log_loss():
    from tasks.ladder.cross_validation import CrossValidated

    folds = [f"r{r}-f{f}" for r in range(2) for f in range(5)]

    def scored(scores, loss):
        return CrossValidated(dict(zip(folds, scores, strict=True)), (), 5, dict.fromkeys(folds, loss))

    ahead = scored([1.0, 0.5] * 5, 0.6)
    behind = scored([0.5, 1.0] * 4 + [0.5, 0.5], 0.2)
    assert _within_one_se({"a": ahead, "b": behind}, ("a", "b")) == "b"  # 0.05 behind, se 0.29
    steady = scored([0.7] * 10, 0.2)
    assert _within_one_se({"a": ahead, "c": steady}, ("a", "c")) == "c"
    far = scored([0.1] * 10, 0.1)
    assert _within_one_se({"a": ahead, "f": far}, ("a", "f")) == "a"  # 0.65 behind: no tie


def test_draws_read_as_a_range_or_a_list():
    assert draws("18-22") == (18, 19, 20, 21, 22)
    assert draws("13,15") == (13, 15)
    for bad in ("", "18-", "a,b", "22-18"):
        with pytest.raises(ValueError, match="give seeds as 18-22 or 13,15"):
            draws(bad)
