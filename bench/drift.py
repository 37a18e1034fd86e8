"""The drift monitor's false-alarm rate and power on CLINC150 (data nobody here wrote), with
the statistics `thaw monitor` runs (thaw.drift.assess_drift) on all-MiniLM-L6-v2 features.

CLINC150's in-scope training rows are split at random (seeded) into what a "champion"
learned from (10,000 rows; a logistic-regression head on frozen features stands in for
it), a held-out slice (its approved accuracy and the vocabulary baseline) and a pool of
arrivals. Same-distribution batches come from that pool, so every alarm on them is false;
shifted batches mix in CLINC's out-of-scope queries (requests none of the 150 intents
cover), labelled as a new intent or unlabelled.
"""

from __future__ import annotations

import json
import time

import numpy as np

from bench.common import row, shared_datasets

CLINC = shared_datasets() / "clinc150" / "data_full.json"
REPEATS = 100
BATCH = 300
SEED = 20261124


def _embed(texts: list[str]) -> np.ndarray:
    import torch

    from thaw.config import BackboneConfig
    from thaw.modeling import configure_threads, embed_texts, load_encoder, resolve_backbone

    configure_threads()
    cfg = BackboneConfig()
    _, directory = resolve_backbone(cfg)
    tokenizer, model = load_encoder(directory, torch.device("cpu"))
    return embed_texts(texts, tokenizer, model, cfg, torch.device("cpu"))


def run(repeats: int = REPEATS) -> dict:
    if not CLINC.is_file():
        print(f"Drift monitor: skipped ({CLINC} not found)")
        return {}
    from sklearn.linear_model import LogisticRegression

    from thaw.config import MonitoringConfig
    from thaw.drift import assess_drift

    data = json.loads(CLINC.read_text(encoding="utf-8"))
    train, oos = data["train"], data["oos_train"] + data["oos_val"] + data["oos_test"]
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(train))
    ref_i, held_i, pool_i = order[:10000], order[10000:11500], order[11500:]
    texts = [t for t, _ in train] + [t for t, _ in oos]
    labels = np.array([c for _, c in train] + ["oos"] * len(oos))
    start = time.perf_counter()
    features = _embed(texts)
    embed_s = time.perf_counter() - start
    oos_i = np.arange(len(train), len(texts))
    head = LogisticRegression(C=10.0, max_iter=2000).fit(features[ref_i], labels[ref_i])
    approved = float(np.mean(head.predict(features[held_i]) == labels[held_i]))
    m = MonitoringConfig()

    def assess(batch: np.ndarray, labelled: bool):
        ref = rng.choice(ref_i, size=m.max_reference_rows, replace=False)
        correct = head.predict(features[batch]) == labels[batch] if labelled else None
        return assess_drift(
            m,
            features[ref],
            features[batch],
            [texts[i] for i in ref_i],
            [texts[i] for i in held_i],
            [texts[i] for i in batch],
            rng,
            reference_labels=list(labels[ref]) if labelled else None,
            new_labels=list(labels[batch]) if labelled else None,
            new_correct=correct,
            approved_accuracy=approved if labelled else None,
            trained_labels=list(labels[ref_i]) if labelled else None,  # as `thaw monitor`: labels never seen
        )

    def rate(make, labelled: bool) -> tuple[float, dict[str, int]]:
        fired, why = 0, {}
        for _ in range(repeats):
            out = assess(make(), labelled)
            fired += out.drifted
            for reason in out.fired:
                key = reason.split(":")[0].split(" ")[0]
                why[key] = why.get(key, 0) + 1
        return fired / repeats, why

    def mixed(share: float):
        return lambda: np.r_[
            rng.choice(pool_i, size=BATCH - int(BATCH * share), replace=False),
            rng.choice(oos_i, size=int(BATCH * share), replace=False),
        ]

    start = time.perf_counter()
    same = lambda: rng.choice(pool_i, size=BATCH, replace=False)  # noqa: E731
    results = {
        "false_alarm_labelled": rate(same, True),
        "false_alarm_unlabelled": rate(same, False),
        "power_unlabelled_oos_10pct": rate(mixed(0.10), False),
        "power_unlabelled_oos_25pct": rate(mixed(0.25), False),
        "power_labelled_oos_5pct": rate(mixed(0.05), True),
    }
    assess_s = (time.perf_counter() - start) / (5 * repeats)
    print(
        f"Drift monitor on CLINC150 ({repeats} batches of {BATCH} rows per line; reference {m.max_reference_rows} "
        f"of 10,000 training rows compared, labels never seen against all 10,000; alpha {m.alpha})"
    )
    row("champion stand-in: frozen MiniLM + logistic regression, held-out accuracy", f"{approved:.4f}")
    for name, (value, why) in results.items():
        goal = f"goal <= {m.alpha}" if name.startswith("false") else ""
        row(f"{name.replace('_', ' ')}: share of batches flagged", f"{value:.2f} {why or ''}", goal)
    row("seconds per assessment (2,300 rows, all tests)", f"{assess_s:.2f}")
    row("embedding CLINC150 train + out-of-scope (once)", f"{embed_s:.0f} s")
    return {k: v[0] for k, v in results.items()} | {"seconds_per_assessment": assess_s}


if __name__ == "__main__":
    run()
