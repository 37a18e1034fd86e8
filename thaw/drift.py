"""Has the data moved since the champion learned? Pure statistics, no I/O.

Four families of evidence, each tested at ``alpha / 4`` so that, on new data drawn from
the training distribution, the chance that any of them fires is at most ``alpha``
(union bound; the permutation tests are exact for exchangeable samples, and use at least
``10 / (alpha / 4)`` permutations so that their smallest p-value can fall below the threshold):

- **text distribution**: a kernel two-sample test (MMD, Gaussian kernel with the median
  bandwidth) between the frozen-backbone embeddings of the reference and the new texts,
  p-value by permutation;
- **within classes** (labelled input): one stratified permutation test of the summed
  per-class MMD over the classes with enough rows on both sides (so 150 classes cost no
  power to multiple testing); each class's own figure is reported, descriptively;
- **label shift** (labelled input): the chi-square statistic of the label counts, p-value
  by permutation, and any label the champion has never seen (a new intent) is drift by
  itself;
- **accuracy** (labelled input): the champion's accuracy on the new rows with a Wilson
  interval (at confidence ``1 - alpha / 4``); drift when the whole interval lies below the
  test accuracy the champion was registered with.

Unseen vocabulary (the share of new word tokens absent from the reference vocabulary) is
reported against the same share for the champion's own held-out split, and flagged when it
is above it by more than a configured margin and the excess is significant at
``alpha / 4`` (a permutation test of rows between the held-out split and the new ones):
one new row of one unknown word is 100% unseen, and counts only as far as held-out rows
rarely reach that. Its margin makes it a rule beside the four tests; it is not counted
in ``alpha``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thaw.config import MonitoringConfig
from thaw.text_form import WORD, normalise_pseudonyms

FAMILIES = 4


def words(text: str) -> list[str]:
    """The vocabulary a drift test compares: entity types stay (a new share of ``<PERSON>``
    is a change of text), their keys do not."""
    return WORD.findall(normalise_pseudonyms(text).casefold())


def unseen_vocabulary_test(
    heldout_texts: Sequence[str],
    new_texts: Sequence[str],
    vocabulary: set[str],
    permutations: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """The unseen-word shares of the new texts and of the held-out ones, and the
    permutation p-value of the new share being that much higher: rows are relabelled
    between the two sides (a row's words stay together), p = (1 + #{permuted >=
    observed}) / (1 + permutations)."""
    counts = [(sum(w not in vocabulary for w in ws), len(ws)) for ws in map(words, [*heldout_texts, *new_texts])]
    unseen, tokens = (np.array([c[i] for c in counts], dtype=float) for i in (0, 1))
    n, total = len(heldout_texts), len(counts)
    new_rate = unseen[n:].sum() / max(tokens[n:].sum(), 1.0)
    heldout_rate = unseen[:n].sum() / max(tokens[:n].sum(), 1.0)
    if n == 0 or total == n:
        return new_rate, heldout_rate, 1.0
    observed = new_rate - heldout_rate
    permuted: list[np.ndarray] = []
    for start in range(0, permutations, 256):  # 256 relabellings at a time, each a row order
        order = rng.permuted(np.tile(np.arange(total), (min(256, permutations - start), 1)), axis=1)
        new_u, new_t = unseen[order[:, n:]].sum(axis=1), tokens[order[:, n:]].sum(axis=1)
        held_u, held_t = unseen.sum() - new_u, tokens.sum() - new_t
        permuted.append(new_u / np.maximum(new_t, 1.0) - held_u / np.maximum(held_t, 1.0))
    p_value = (1 + int(np.sum(np.concatenate(permuted) >= observed - 1e-12))) / (1 + permutations)
    return new_rate, heldout_rate, p_value


def _sq_distances(x: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    return d


@dataclass(frozen=True)
class TwoSample:
    """MMD^2 (biased estimate) between two samples and its permutation p-value."""

    mmd2: float
    p_value: float
    n_reference: int
    n_new: int
    permutations: int


def _kernel(x: np.ndarray) -> np.ndarray:
    """Gaussian kernel matrix with the median heuristic bandwidth."""
    d = _sq_distances(x.astype(np.float64))
    upper = d[np.triu_indices(len(x), k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    return np.exp(-d / bandwidth)


def _mmd_statistics(k: np.ndarray, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """MMD^2 of the first ``n`` rows against the rest: observed first, then under
    ``permutations`` random relabellings (all in one matrix product)."""
    m = len(k) - n
    labels = np.r_[np.ones(n, bool), np.zeros(m, bool)]
    weights = np.empty((n + m, permutations + 1))
    for j in range(permutations + 1):
        side = labels if j == 0 else rng.permutation(labels)
        weights[:, j] = np.where(side, 1.0 / n, -1.0 / m)
    return np.einsum("ij,ij->j", weights, k @ weights)


def _p_value(stats: np.ndarray) -> float:
    return (1 + int(np.sum(stats[1:] >= stats[0] - 1e-12))) / len(stats)


def permutations_for(alpha: float, asked: int) -> int:
    """Enough permutations that the smallest reachable p-value, 1/(B+1), is a tenth of
    ``alpha`` (otherwise a test at a small alpha could never fire)."""
    return max(asked, math.ceil(10 / alpha) - 1)


def mmd_test(reference: np.ndarray, new: np.ndarray, permutations: int, rng: np.random.Generator) -> TwoSample:
    """Kernel two-sample test; p = (1 + #{permuted >= observed}) / (1 + permutations)."""
    n, m = len(reference), len(new)
    if n < 2 or m < 2:
        return TwoSample(0.0, 1.0, n, m, 0)
    stats = _mmd_statistics(_kernel(np.vstack([reference, new])), n, permutations, rng)
    return TwoSample(float(stats[0]), _p_value(stats), n, m, permutations)


def within_class_test(
    groups: dict[str, tuple[np.ndarray, np.ndarray]], permutations: int, rng: np.random.Generator
) -> tuple[float, dict[str, TwoSample]]:
    """Has the text moved within classes? One test: the sum of per-class MMD^2, each class
    permuted only within itself (a stratified permutation test, exact at its level however
    many classes there are). Also each class's own statistic and p-value, descriptive."""
    total = np.zeros(permutations + 1)
    per_class = {}
    for name, (reference, new) in groups.items():
        stats = _mmd_statistics(_kernel(np.vstack([reference, new])), len(reference), permutations, rng)
        total += stats
        per_class[name] = TwoSample(float(stats[0]), _p_value(stats), len(reference), len(new), permutations)
    return (_p_value(total) if groups else 1.0), per_class


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) without observations."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def label_shift_test(
    reference: Sequence[str], new: Sequence[str], permutations: int, rng: np.random.Generator
) -> float:
    """Do the new rows' labels come in other proportions than the reference's? The
    chi-square statistic of the two label counts, with its p-value by permutation: rows
    are relabelled between the two sides, which with the margins fixed draws the new
    side's counts from the multivariate hypergeometric; p = (1 + #{permuted >= observed})
    / (1 + permutations).

    Not the asymptotic chi-square p-value, which is loose where many cells expect few
    rows: against 10,000 labels of 28 classes (329x imbalance), batches of 300, it fired
    on 0.0130 of same-distribution batches where its share of alpha is 0.0025; this test
    on 0.0013 (``python -m bench.label_shift_probe``, docs/benchmarks.md). The
    permutation p-value is exact for exchangeable rows at any cell size.

    Every label on either side is counted, including one only the new rows carry: a
    sample of the training rows can lack a rare class that arrives, and leaving such
    columns out drops exactly the tables where all of a class's rows fell on the new side,
    which makes the test conservative (in the unit test's setting, 150 equal classes and
    60 arrivals against 600 labels, about 2% of same-distribution batches fell below
    p = 0.1 that way, against 10% counting every label; one scratch run). A label the
    champion never saw fires on its own as well (``_labelled_tests``)."""
    ref_counts, new_counts = Counter(reference), Counter(new)
    labels = sorted(ref_counts.keys() | new_counts.keys())
    observed = np.array([new_counts[c] for c in labels], dtype=np.int64)
    totals = observed + np.array([ref_counts[c] for c in labels], dtype=np.int64)
    m, n = int(observed.sum()), int(totals.sum() - observed.sum())
    if len(labels) < 2 or m == 0 or n == 0:
        return 1.0
    # numpy's two exact samplers: "count" costs in proportion to the rows drawn, "marginals"
    # to the classes (4,000 draws of 300 rows over 150 classes: 0.02 s against 0.07); "count"
    # also holds one integer per row of both sides, so not for millions of training rows
    method = "count" if m < 4 * len(labels) and n + m <= 2_000_000 else "marginals"
    tables = np.vstack([observed, rng.multivariate_hypergeometric(totals, m, size=permutations, method=method)])
    # Pearson's statistic for a 2 x k table with these margins is N^2 / (n m) times this sum
    # (the reference row's deviations are the new row's, negated): the same order
    stats = (((tables - totals * (m / (n + m))) ** 2) / totals).sum(axis=1)
    return _p_value(stats)


@dataclass
class DriftAssessment:
    """Every figure the monitor reports, and which of them fired."""

    alpha: float
    rows_reference: int
    rows_new: int
    text: TwoSample
    unseen_vocab_new: float
    unseen_vocab_baseline: float
    unseen_vocab_margin: float
    unseen_vocab_p: float
    label_shift_p: float | None = None
    known_label_rows: int = 0  # the training rows whose labels the label shift and 'never seen' read
    unknown_labels: list[str] = field(default_factory=list)
    per_class_p: float | None = None
    per_class: dict[str, TwoSample] = field(default_factory=dict)
    accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    approved_accuracy: float | None = None
    fired: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.fired)

    @property
    def family_alpha(self) -> float:
        return self.alpha / FAMILIES


def assess_drift(
    settings: MonitoringConfig,
    reference_features: np.ndarray,
    new_features: np.ndarray,
    reference_texts: Sequence[str],
    heldout_texts: Sequence[str],
    new_texts: Sequence[str],
    rng: np.random.Generator,
    reference_labels: Sequence[str] | None = None,
    new_labels: Sequence[str] | None = None,
    new_correct: Sequence[bool] | None = None,
    approved_accuracy: float | None = None,
    trained_labels: Sequence[str] | None = None,
    arrival_labels: Sequence[str] | None = None,
) -> DriftAssessment:
    """Run every applicable test; ``fired`` names each one beyond its threshold, with the figure.
    ``reference_labels`` and ``new_labels`` are the labels of the rows whose features are
    compared (samples: the tests within classes, the accuracy); ``trained_labels`` and
    ``arrival_labels``, every training row's and every arrival's (default: the samples'),
    for the label shift and the labels never seen: a class the training sample left out is
    still one the model learned, and a new label on one arrival of many is still new.
    Against every training label the label shift has about twice the power it has against
    a 2,000-row sample (0.145 against 0.079 on 150 classes, five of them arriving at three
    times their share), at its level either way (0.0013-0.0032 against its share of alpha,
    0.0025; ``python -m bench.label_shift_probe``, docs/benchmarks.md), which its
    permutation p-value holds where the asymptotic one fired at 0.0130."""
    family_alpha = settings.alpha / FAMILIES
    permutations = permutations_for(family_alpha, settings.permutations)
    out = DriftAssessment(
        alpha=settings.alpha,
        rows_reference=len(reference_features),
        rows_new=len(new_features),
        text=mmd_test(reference_features, new_features, permutations, rng),
        unseen_vocab_new=0.0,
        unseen_vocab_baseline=0.0,
        unseen_vocab_margin=settings.unseen_vocab_margin,
        unseen_vocab_p=1.0,
        approved_accuracy=approved_accuracy,
    )
    if out.text.p_value < family_alpha:
        out.fired.append(f"text distribution: MMD p={out.text.p_value:.4f} < {family_alpha:.4f}")
    if reference_labels is not None and new_labels is not None:
        every = (
            reference_labels if trained_labels is None else trained_labels,
            new_labels if arrival_labels is None else arrival_labels,
        )
        _labelled_tests(
            out, settings, (reference_features, reference_labels), every, new_features, new_labels, new_correct, rng
        )
    # its permutations come from a generator spawned off ``rng``, which leaves ``rng``'s own
    # stream as it was: the four tests draw what they drew without this rule
    vocabulary = {w for t in reference_texts for w in words(t)}
    own = rng.spawn(1)[0]
    new_rate, heldout_rate, vocab_p = unseen_vocabulary_test(heldout_texts, new_texts, vocabulary, permutations, own)
    out.unseen_vocab_new, out.unseen_vocab_baseline, out.unseen_vocab_p = new_rate, heldout_rate, vocab_p
    if new_rate > heldout_rate + settings.unseen_vocab_margin and vocab_p < family_alpha:
        out.fired.append(
            f"unseen vocabulary {new_rate:.1%} > held-out {heldout_rate:.1%} + {settings.unseen_vocab_margin:.0%} "
            f"(p={vocab_p:.4f} < {family_alpha:.4f})"
        )
    return out


def _labelled_tests(
    out: DriftAssessment,
    settings: MonitoringConfig,
    reference: tuple[np.ndarray, Sequence[str]],
    every_row: tuple[Sequence[str], Sequence[str]],
    new_features: np.ndarray,
    new_labels: Sequence[str],
    new_correct: Sequence[bool] | None,
    rng: np.random.Generator,
) -> None:
    """The tests of labelled arrivals (label shift, new labels, within classes, accuracy),
    their figures and alarms written into ``out``. ``reference``: the sampled training
    rows' features and labels (the tests within classes); ``every_row``: the labels of
    every training row and of every arrival (the label shift, the labels never seen)."""
    reference_features, reference_labels = reference
    family_alpha = out.family_alpha
    permutations = permutations_for(family_alpha, settings.permutations)
    approved_accuracy = out.approved_accuracy
    # its relabellings come from a generator spawned off ``rng``, as the vocabulary rule's do
    out.label_shift_p = label_shift_test(every_row[0], every_row[1], permutations, rng.spawn(1)[0])
    out.known_label_rows = len(every_row[0])
    out.unknown_labels = sorted(set(every_row[1]) - set(every_row[0]))
    if out.unknown_labels:
        out.fired.append(f"labels the champion never saw: {', '.join(out.unknown_labels[:10])}")
    if out.label_shift_p < family_alpha:
        out.fired.append(f"label shift: chi-square p={out.label_shift_p:.4f} < {family_alpha:.4f}")
    ref_labels, new_labels_arr = np.asarray(reference_labels), np.asarray(new_labels)
    classes = [
        c
        for c in sorted(set(reference_labels) & set(new_labels))
        if min(int(np.sum(ref_labels == c)), int(np.sum(new_labels_arr == c))) >= settings.min_rows_per_class
    ]
    if classes:
        out.per_class_p, out.per_class = within_class_test(
            {c: (reference_features[ref_labels == c], new_features[new_labels_arr == c]) for c in classes},
            permutations,
            rng,
        )
        if out.per_class_p < family_alpha:
            moved = sorted(out.per_class, key=lambda c: out.per_class[c].p_value)[:5]
            out.fired.append(
                f"text within classes: p={out.per_class_p:.4f} < {family_alpha:.4f} (most moved: {', '.join(moved)})"
            )
    if new_correct is not None and len(new_correct):
        hits = int(np.sum(new_correct))
        out.accuracy = hits / len(new_correct)
        out.accuracy_interval = wilson_interval(hits, len(new_correct), 1 - family_alpha)
        if approved_accuracy is not None and out.accuracy_interval[1] < approved_accuracy:
            out.fired.append(
                f"accuracy {out.accuracy:.3f} (interval up to {out.accuracy_interval[1]:.3f}) below the "
                f"approved {approved_accuracy:.3f}"
            )
