"""A stored model's head is whoever registered it's: one that cannot answer labels.json's
classes from the backbone's features is named at load, not met at the first request."""

from __future__ import annotations

import numpy as np
import pytest

from thaw.modeling import head_problem

Z = np.zeros


@pytest.mark.parametrize(
    "head",
    [
        {"weight": Z((3, 8)), "bias": Z(3)},  # linear
        {"w1": Z((5, 8)), "b1": Z(5), "weight": Z((3, 5)), "bias": Z(3)},  # one hidden layer
        {"weight": Z((3, 8)), "words_weight": Z((3, 40)), "bias": Z(3)},  # features and words
    ],
)
def test_the_heads_thaw_saves_fit(head):
    assert head_problem(head, 3, 8) is None
    assert head_problem(head, 3, None) is None  # a backbone whose width is not stated: not checked


@pytest.mark.parametrize(
    ("head", "said"),
    [
        ({"weight": Z((3, 8))}, "no weight and bias"),
        ({"weight": Z((3, 8)), "bias": Z(4)}, "its bias answers (4,), not the 3 classes"),
        ({"weight": Z((3, 9)), "bias": Z(3)}, "its weight is (3, 9), not (3, 8)"),
        ({"weight": Z(24), "bias": Z(3)}, "its weight is (24,)"),
        ({"w1": Z((5, 9)), "b1": Z(5), "weight": Z((3, 5)), "bias": Z(3)}, "hidden layer (5, 9)"),
        ({"w1": Z((5, 8)), "weight": Z((3, 5)), "bias": Z(3)}, "hidden layer (5, 8)"),
        ({"weight": Z((3, 8)), "words_weight": Z((2, 40)), "bias": Z(3)}, "word weights are (2, 40)"),
    ],
)
def test_a_head_that_does_not_fit_is_named(head, said):
    assert said in head_problem(head, 3, 8)
