"""The drift monitor's label-shift chi-square on same-distribution batches: its false-alarm
rate against a 2,000-row sample of the training labels (what ``thaw monitor`` compares)
and against 10,000 (every training row of a larger set), at its share of alpha (0.01 / 4).

``python -m bench.label_shift_probe`` draws 4,000 batches of 300 arrivals for each line:

- CLINC150: 10,000 training rows and a pool of arrivals split from its in-scope training
  rows as ``bench.drift`` splits them (every class has exactly 100 rows there, so the two
  parts' counts are tied);
- independent draws from one distribution: 150 equal classes, and 28 classes whose
  largest is 329 times the smallest (GoEmotions' imbalance), reference and arrivals drawn
  apart.

Labels only: no encoder runs. Every alarm counted is false.
"""

from __future__ import annotations

import json

import numpy as np

from bench import drift

ALPHA_SHARE = 0.01 / 4
BATCHES = 4000
SIZES = (2000, 10000)


def _line(title: str, draw_reference, draw_batch) -> str:
    from thaw.drift import label_shift_test

    alarms = dict.fromkeys(SIZES, 0)
    for _ in range(BATCHES):
        batch = draw_batch()
        for size in SIZES:
            alarms[size] += label_shift_test(draw_reference(size), batch)[0] < ALPHA_SHARE
    figures = "; ".join(f"against {size:,} labels {n}/{BATCHES} = {n / BATCHES:.4f}" for size, n in alarms.items())
    return f"{title}: {figures} (its share of alpha {ALPHA_SHARE})"


def main() -> None:
    rng = np.random.default_rng(7)
    lines = []
    if drift.CLINC.is_file():
        train = json.loads(drift.CLINC.read_text(encoding="utf-8"))["train"]
        order = np.random.default_rng(drift.SEED).permutation(len(train))
        ref_i, pool_i = order[:10000], order[11500:]
        labels = np.array([label for _, label in train])
        lines.append(
            _line(
                "CLINC150, split as bench.drift splits it",
                lambda size: list(labels[ref_i if size == len(ref_i) else rng.choice(ref_i, size, replace=False)]),
                lambda: list(labels[rng.choice(pool_i, drift.BATCH, replace=False)]),
            )
        )
    for title, weights in (
        ("150 equal classes", np.ones(150)),
        ("28 classes, 329x imbalance", np.geomspace(329, 1, 28)),
    ):
        p = weights / weights.sum()
        names = np.array([f"c{i}" for i in range(len(p))])
        lines.append(
            _line(
                f"independent draws, {title}",
                lambda size, p=p, names=names: list(names[rng.choice(len(p), size, p=p)]),
                lambda p=p, names=names: list(names[rng.choice(len(p), drift.BATCH, p=p)]),
            )
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
