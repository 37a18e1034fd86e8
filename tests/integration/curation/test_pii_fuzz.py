"""Random, adversarial and very long texts through the real scrubber: every one finishes
within a fixed budget, none ends in a traceback, and nothing the residual check refuses
is left in what comes out. Seeded: a failure here reproduces."""

from __future__ import annotations

import random
import time

import pytest

from tasks.curation.expectations import residual_pii_kinds
from thaw.config import PiiConfig
from thaw.pii.detector import PiiDetector, PiiSecret, scrub_texts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BUDGET_S = 30.0  # per text of up to 100,000 characters; the slowest measured here took 8 s
POOL = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789      .,;:-/@=?&<>_()'\"\\\n\t")
POOL += list("\u00a0\u202f\u2009\u00ad\u200b\u200d\u2060\ufeff\u0301\u0308éßøÆ张伟電話Иванمحمد") + [
    "😀",
    "ﬁ",
    "①",
    "４",
    "＠",
    "．",
]
WORDS = (
    "Maria Gonzalez Street Road card 4111 1111 call +44 20 7946 0958 ana@example.com https://bob:pw@x.io "
    "?token=abc123 Mr. Dr in Berlin my\\nname is GB82WEST12345698765432 \\n 12345 Apt Suite 1990-01-02 "
    "<PERSON_1a2b3c> 5018"
).split()
# Each once stalled a rule or is the shape of one that could: runs of digits, dots, '@',
# names and street words, escapes, invisible characters, combining marks.
ADVERSARIAL = [
    "1 " * 50_000,
    "0." * 50_000,
    "a@" * 50_000,
    "Ab " * 33_333,
    "4111 " * 20_000,
    "12 Main Street, " * 6_000,
    "\\n" * 50_000,
    "\u200b" * 100_000,
    "e\u0301" * 50_000,
    "x://" * 25_000,
    "+" * 100_000,
    "(1)" * 33_000,
]


def _random_text(rng: random.Random, size: int) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(POOL) for _ in range(size))
    parts, length = [], 0
    while length < size:
        word = rng.choice(WORDS) if rng.random() < 0.7 else "".join(rng.choices(POOL, k=rng.randint(1, 6)))
        sep = rng.choice([" ", " ", "\u00a0", "-", ".", "", "\n", ", "])
        parts.append(word + sep)
        length += len(word) + len(sep)
    return "".join(parts)[:size]


@pytest.fixture(scope="module")
def detector():
    return PiiDetector(PiiConfig())


@pytest.mark.parametrize("kind", ["adversarial", "random"])
def test_any_text_is_scrubbed_within_budget_and_leaves_nothing_the_residual_check_refuses(detector, kind):
    rng = random.Random(20261202)
    if kind == "adversarial":
        texts = ADVERSARIAL
    else:
        texts = [_random_text(rng, size) for size in [10, 100, 1_000, 10_000] * 5 + [100_000] * 2]
    secret, slow, left = PiiSecret(b"fuzz", "test"), [], []
    for i, text in enumerate(texts):
        started = time.perf_counter()
        (scrubbed,) = scrub_texts([text], detector, secret)
        seconds = time.perf_counter() - started
        if seconds > BUDGET_S:
            slow.append((i, len(text), round(seconds, 1)))
        if kinds := residual_pii_kinds(scrubbed):
            left.append((i, kinds, text[:40]))
    assert slow == [] and left == []
