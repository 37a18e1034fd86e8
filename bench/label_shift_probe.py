"""The drift monitor's label-shift test on batches of labels: how often it fires on
same-distribution batches (every alarm false) and on shifted ones (every alarm true), at
its share of alpha (0.01 / 4), against a 2,000-row sample of the training labels (what
``thaw monitor`` compares) and against 10,000 (every training row of a larger set).

Two p-values of the same chi-square statistic on the same batches, side by side: thaw's
(``thaw.drift.label_shift_test``, by permutation) and the asymptotic chi-square
distribution's (scipy's ``chi2_contingency``, which thaw used before b0a37bc).

``python -m bench.label_shift_probe`` draws, for each line, 4,000 same-distribution
batches of 300 arrivals and 1,000 shifted ones (five classes, chosen at random once per
line, arrive at three times their share):

- CLINC150: 10,000 training rows and a pool of arrivals split from its in-scope training
  rows as ``bench.drift`` splits them (every class has exactly 100 rows there, so the two
  parts' counts are tied);
- independent draws from one distribution: 150 equal classes, and 28 classes whose
  largest is 329 times the smallest (GoEmotions' imbalance), reference and arrivals drawn
  apart.

Labels only: no encoder runs.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np

from bench import drift

ALPHA = 0.01
ALPHA_SHARE = ALPHA / 4
SAME, SHIFTED = 4000, 1000
SIZES = (2000, 10000)
TESTS = ("permutation (thaw)", "asymptotic")


def _asymptotic(reference, new) -> float:
    from scipy.stats import chi2_contingency

    ref_counts, new_counts = Counter(reference), Counter(new)
    known = sorted(ref_counts)
    table = np.array([[ref_counts[c] for c in known], [new_counts[c] for c in known]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[1].sum() == 0:
        return 1.0
    return float(chi2_contingency(table)[1])


def _rates(batches: int, draw_reference, draw_batch, rng) -> dict[tuple[str, int], float]:
    from thaw.drift import label_shift_test, permutations_for

    permutations = permutations_for(ALPHA_SHARE, 0)
    fired = dict.fromkeys(((test, size) for test in TESTS for size in SIZES), 0)
    for _ in range(batches):
        batch = draw_batch()
        for size in SIZES:
            reference = draw_reference(size)
            fired[TESTS[0], size] += label_shift_test(reference, batch, permutations, rng) < ALPHA_SHARE
            fired[TESTS[1], size] += _asymptotic(reference, batch) < ALPHA_SHARE
    return {key: n / batches for key, n in fired.items()}


def _line(title: str, draw_reference, draw_batch, draw_shifted, rng) -> str:
    start = time.perf_counter()
    same = _rates(SAME, draw_reference, draw_batch, rng)
    shifted = _rates(SHIFTED, draw_reference, draw_shifted, rng)
    rows = [
        f"  {test}, against {size:,} labels: false alarms {same[test, size]:.4f}, power {shifted[test, size]:.3f}"
        for test in TESTS
        for size in SIZES
    ]
    return "\n".join(
        [f"{title} ({SAME:,} same / {SHIFTED:,} shifted batches, {time.perf_counter() - start:.0f} s):", *rows]
    )


def _tilted(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Five classes at three times their share."""
    q = p.copy()
    q[rng.choice(len(p), 5, replace=False)] *= 3
    return q / q.sum()


def main() -> None:
    rng = np.random.default_rng(7)
    print(f"Label shift at alpha {ALPHA} / 4 = {ALPHA_SHARE}; batches of {drift.BATCH}", flush=True)
    if drift.CLINC.is_file():
        train = json.loads(drift.CLINC.read_text(encoding="utf-8"))["train"]
        order = np.random.default_rng(drift.SEED).permutation(len(train))
        ref_i, pool_i = order[:10000], order[11500:]
        labels = np.array([label for _, label in train])
        classes = sorted(set(labels))
        weight = dict(zip(classes, _tilted(np.ones(len(classes)), rng) * len(classes), strict=True))
        pool_p = np.array([weight[label] for label in labels[pool_i]])
        pool_p /= pool_p.sum()
        print(
            _line(
                "CLINC150, split as bench.drift splits it",
                lambda size: list(labels[ref_i if size == len(ref_i) else rng.choice(ref_i, size, replace=False)]),
                lambda: list(labels[rng.choice(pool_i, drift.BATCH, replace=False)]),
                lambda: list(labels[rng.choice(pool_i, drift.BATCH, replace=False, p=pool_p)]),
                rng,
            ),
            flush=True,
        )
    for title, weights in (
        ("150 equal classes", np.ones(150)),
        ("28 classes, 329x imbalance", np.geomspace(329, 1, 28)),
    ):
        p = weights / weights.sum()
        q = _tilted(p, rng)
        names = np.array([f"c{i}" for i in range(len(p))])
        print(
            _line(
                f"independent draws, {title}",
                lambda size, p=p, names=names: list(names[rng.choice(len(p), size, p=p)]),
                lambda p=p, names=names: list(names[rng.choice(len(p), drift.BATCH, p=p)]),
                lambda q=q, names=names: list(names[rng.choice(len(q), drift.BATCH, p=q)]),
                rng,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
