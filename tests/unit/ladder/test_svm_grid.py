"""The scratch yardstick's C grid fitted in processes gives, C for C, what one fit gives,
and leaves no process behind."""

from __future__ import annotations

import numpy as np
import psutil
import pytest


@pytest.mark.parametrize("grid", [(1.0,), (0.1, 0.3, 1.0, 3.0)])
def test_each_c_in_processes_gives_the_labels_of_a_fit_alone(grid):
    from scipy.sparse import random as sparse_random
    from sklearn.svm import LinearSVC

    from thaw.heads import svm_predictions

    rng = np.random.default_rng(0)
    train = sparse_random(120, 300, density=0.05, format="csr", random_state=1)
    test = sparse_random(40, 300, density=0.05, format="csr", random_state=2)
    y = rng.choice(["a", "b", "c", "d"], size=120)
    got = svm_predictions(train, y, test, grid, 200, 13)
    # no idle worker outlives the grid (the resource trackers live as long as this process)
    left = [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)]
    assert all("resource_tracker" in cmd for cmd in left), left
    assert list(got) == list(grid)
    for c in grid:
        alone = LinearSVC(C=c, max_iter=200, random_state=13).fit(train, y).predict(test)
        assert (got[c] == alone).all()
