"""Before climbing: what the data says (label counts, domain gap, whether reuse works),
how rungs will be scored (held-out validation or cross-validation), and which rungs the
decision table suggests (``thaw.gate.ladder_plan``)."""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
from prefect import task

from tasks.ladder.features import FeatureSet
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import DataEvidence, EvaluationPlan, LadderContext, LadderPlan, TrainedRung

SAMPLE_ROWS = 4000  # enough to measure fragmentation and neighbour accuracy; bounded cost


def fragmented_word_share(texts: list[str], tokenizer, sample: int = SAMPLE_ROWS) -> float:
    """Share of distinct words the tokenizer cuts into 3+ pieces or maps to [UNK]: how far
    the text's vocabulary is from the backbone's. Words are letters only: placeholders
    (pseudonyms, masks), punctuation and numbers say nothing about the domain and are
    left out (``thaw.text_form.domain_words``)."""
    from thaw.text_form import domain_words

    words = {w for t in texts[:sample] for w in domain_words(t)}
    if not words:
        return 0.0
    unk = getattr(tokenizer, "unk_token", None)
    cut = sum(1 for w in words if len(pieces := tokenizer.tokenize(w)) >= 3 or unk in pieces)
    return cut / len(words)


def neighbour_accuracy(x: np.ndarray, y: list[str], sample: int = SAMPLE_ROWS, seed: int = 0) -> float:
    """Leave-one-out 1-nearest-neighbour accuracy (cosine) of frozen features: how well the
    pretrained space already separates the classes."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(y), size=min(sample, len(y)), replace=False)
    xs, ys = x[pick], np.asarray(y)[pick]
    xs = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-12)
    correct = 0
    for start in range(0, len(xs), 512):
        sim = xs[start : start + 512] @ xs.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        correct += int((ys[sim.argmax(1)] == ys[start : start + 512]).sum())
    return correct / max(len(xs), 1)


@task(name="assess-data")
def assess_data(
    features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig
) -> tuple[DataEvidence, EvaluationPlan]:
    """Label counts, domain-gap measures and how the rungs will be scored."""
    from thaw.decision_table import evaluation_plan
    from thaw.modeling import load_encoder, resolve_backbone

    train, val = curated.read(cfg.root, "train"), curated.read(cfg.root, "validation")
    counts = Counter(train.labels)
    per_class = [counts.get(label, 0) for label in labels]
    val_counts = Counter(val.labels)
    tokenizer = load_encoder(resolve_backbone(cfg.backbone)[1], _cpu())[0]
    evidence = DataEvidence(
        classes=len(labels),
        train_rows=len(train),
        rows_per_class_min=min(per_class),
        rows_per_class_median=float(statistics.median(per_class)),
        fragmented_word_share=fragmented_word_share(train.texts, tokenizer),
        neighbour_accuracy=neighbour_accuracy(np.load(features.paths["train"]), train.labels, seed=cfg.training.seed),
    )
    ladder = cfg.training.ladder
    pool_counts = Counter(train.labels) + val_counts
    plan = evaluation_plan(
        len(labels),
        float(statistics.median(val_counts.get(label, 0) for label in labels)),
        ladder.min_detectable_gain,
        ladder.alpha,
        ladder.cv_folds,
        ladder.cv_repeats,
        cfg.training.seed,
        min(pool_counts.get(label, 0) for label in labels),
    )
    return evidence, plan


def _cpu():
    import torch

    return torch.device("cpu")


@task(name="plan-ladder")
def plan_ladder(
    evidence: DataEvidence,
    scratch: TrainedRung,
    frozen: TrainedRung,
    ctx: LadderContext,
) -> tuple[DataEvidence, LadderPlan]:
    """Whether reuse works (frozen against scratch, on the same rows) completes the
    evidence; the decision table then picks the rungs to climb."""
    import dataclasses

    from tasks.ladder.escalation import compare_rungs
    from thaw.decision_table import ladder_plan

    ladder = ctx.cfg.training.ladder
    reuse = compare_rungs(scratch, frozen, ctx)
    evidence = dataclasses.replace(
        evidence,
        frozen_minus_scratch=reuse.delta,
        frozen_vs_scratch_p=1 - reuse.p_value,  # p that scratch is better: the other side
        frozen_metric=frozen.validation[ladder.metric],
    )
    return evidence, ladder_plan(evidence, ladder.rungs, ladder.alpha, ladder.follow_decision_table)
