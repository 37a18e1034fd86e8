"""Training rungs: the scratch baseline (TF-IDF + a linear SVM) and the frozen
rung (frozen backbone features + a logistic-regression head, C chosen on validation).

Each rung writes a self-describing model directory (weights as safetensors or JSON,
never pickles) and returns a ``TrainedRung`` with its validation predictions.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from prefect import task

from tasks.evaluation.scoring import score_predictions
from tasks.ladder.features import FeatureSet
from thaw import artifacts
from thaw.config import ThawConfig
from thaw.content_cache import ContentCache, content_key
from thaw.datasets import DatasetVersion
from thaw.heads import fit_logistic_head, linear_head_of, logistic_head, logistic_path, one_blas_thread
from thaw.modeling import head_probabilities, usable_cores
from thaw.pii.masking import input_form
from thaw.rung_methods.frozen import FROZEN
from thaw.rungs import EvaluationPlan, LadderContext, RungDetails, TrainedRung
from thaw.words import WORDS_JSON, WORDS_TENSORS, WordFeatures

LINEAR_PROBE = "linear_head.safetensors"  # the frozen rung's linear head: every adapted rung starts from it


def frozen_model_dir(run_dir: Path) -> Path:
    """Where the frozen rung's model (and the linear probe) of a run is written."""
    return artifacts.rung_model_dir(run_dir, FROZEN.name)


def linear_probe_path(run_dir: Path) -> Path:
    """The linear head adapted rungs start from (LP-FT)."""
    return frozen_model_dir(run_dir) / LINEAR_PROBE


def fit_mlp_head(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], labels: tuple[str, ...], cfg: ThawConfig
) -> tuple[dict[str, np.ndarray], float]:
    """A one-hidden-layer MLP on frozen features, full batch, the epoch best on validation
    macro-F1 kept; returns (tensors, that score)."""
    import torch

    from thaw.metrics import encode, macro_f1_codes

    h = cfg.training.head
    torch.manual_seed(cfg.training.seed)
    t_train, _, k = encode(y["train"], y["train"], labels)
    t_val, _, _ = encode(y["validation"], y["validation"], labels)
    xt, xv = torch.from_numpy(x["train"]), torch.from_numpy(x["validation"])
    yt = torch.from_numpy(t_train)
    model = torch.nn.Sequential(
        torch.nn.Linear(x["train"].shape[1], h.mlp_hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(h.mlp_dropout),
        torch.nn.Linear(h.mlp_hidden, len(labels)),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=h.mlp_learning_rate, weight_decay=h.mlp_weight_decay)
    best, best_score = None, -1.0
    for epoch in range(h.mlp_epochs):
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
        if epoch % 10 == 9:
            model.eval()
            with torch.no_grad():
                score = macro_f1_codes(t_val, model(xv).argmax(1).numpy(), k)
            if score > best_score:
                best_score = score
                best = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}
    tensors = {"w1": best["0.weight"], "b1": best["0.bias"], "weight": best["3.weight"], "bias": best["3.bias"]}
    return {n: v.astype(np.float32) for n, v in tensors.items()}, best_score


def save_head(
    model_dir: Path,
    head: dict[str, np.ndarray],
    linear: tuple[np.ndarray, np.ndarray],
    labels: tuple[str, ...],
    meta: dict,
    words: WordFeatures | None = None,
) -> None:
    """head.safetensors (the chosen head), linear_head.safetensors (the linear probe that
    deeper rungs start from), labels.json and model.json in ``model_dir``, and the word
    features of a head that reads them."""
    from safetensors.numpy import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({n: v.astype(np.float32) for n, v in head.items()}, str(model_dir / "head.safetensors"))
    save_file(
        {"weight": linear[0].astype(np.float32), "bias": linear[1].astype(np.float32)},
        str(model_dir / LINEAR_PROBE),
    )
    (model_dir / "labels.json").write_text(json.dumps(list(labels)), encoding="utf-8")
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    for name in (WORDS_JSON, WORDS_TENSORS):  # a head over word n-grams carries them; no other does
        (model_dir / name).unlink(missing_ok=True)
    if words is not None:
        words.save(model_dir)


def save_linear_head(
    model_dir: Path, weight: np.ndarray, bias: np.ndarray, labels: tuple[str, ...], meta: dict
) -> None:
    """A model directory whose head is linear."""
    save_head(model_dir, {"weight": weight, "bias": bias}, (weight, bias), labels, meta)


WORDS = "words"  # the head over features and word n-grams, beside the Cs of head.c_grid
WORDS_HEAD = "logistic regression on the features and word n-grams"


def fit_words_head(
    x: np.ndarray, y: np.ndarray, texts: list[str], labels: tuple[str, ...], cfg: ThawConfig
) -> tuple[dict[str, np.ndarray], WordFeatures]:
    """(head, word features) of one logistic regression at ``head.words_c`` on the unit-
    length features of ``x`` beside TF-IDF n-grams of ``texts`` (``thaw.words``)."""
    from thaw.words import WordSettings, fit_logistic

    h = cfg.training.head
    words, matrix = WordFeatures.fit_transform(texts, WordSettings(max_features=h.words_max_features))
    with one_blas_thread():
        head = fit_logistic(x, matrix, list(y), labels, h.words_c, h.max_iter)
    return head, words


def fit_final_head(
    x: np.ndarray,
    y: np.ndarray,
    texts: list[str],
    labels: tuple[str, ...],
    probe_c: float,
    words: bool,
    cfg: ThawConfig,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], WordFeatures | None, str]:
    """(head, linear probe, word features or None, the head's name) on every row given:
    the linear probe at ``probe_c`` (the adapted rungs start from it) and, with
    ``words``, the head over features and word n-grams, which is then the head."""
    weight, bias = logistic_head(x, y, labels, probe_c, cfg)
    linear = {"weight": weight, "bias": bias}
    if not words:
        return linear, linear, None, "logistic regression"
    head, fitted = fit_words_head(x, y, texts, labels, cfg)
    return head, linear, fitted, WORDS_HEAD


def words_probabilities(head: dict, words: WordFeatures, x: np.ndarray, texts: list[str]) -> np.ndarray:
    return head_probabilities(x, head, words.transform(texts))


def _cached_heads(features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, fit):
    """The fitted heads (and the word features of a head that reads them) for these
    features, labels and head settings: cached by content."""
    from safetensors.numpy import load_file, save_file

    settings = {
        "features": dict(sorted(features.keys.items())),
        "labels": {s: curated.files[s].md5 for s in ("train", "validation")},
        "classes": list(labels),
        "head": cfg.training.head.model_dump(mode="json"),
        "seed": cfg.training.seed,
    }
    cache = ContentCache(cfg.state_path / "cache" / "heads")
    key = content_key("heads", settings, HEAD_LIBRARIES, "cpu-fp32")  # heads are fit on the CPU
    entry = cache.get(key)
    if entry is not None:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        words = WordFeatures.load(entry) if (entry / WORDS_JSON).is_file() else None
        head, linear = load_file(str(entry / "head.safetensors")), load_file(str(entry / "linear.safetensors"))
        return head, linear, meta, words, True
    head, linear, meta, words = fit()
    with cache.put(key) as staging:
        save_file(head, str(staging / "head.safetensors"))
        save_file(linear, str(staging / "linear.safetensors"))
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if words is not None:
            words.save(staging)
    return head, linear, meta, words, False


HEAD_LIBRARIES = ("scikit-learn", "scipy", "torch", "numpy")  # scipy: the words head's solver


def _fit_frozen_heads(x: dict, y: dict, texts: dict, labels: tuple[str, ...], cfg: ThawConfig):
    """(chosen head, linear head, meta, word features or None): logistic regression, then
    the head over features and word n-grams, then an MLP, each kept if it does better on
    validation."""
    from thaw.metrics import macro_f1

    weight, bias, c, scores = fit_logistic_head(x, y, labels, cfg)
    linear = {"weight": weight, "bias": bias}
    meta = {"C": c, "scores": {str(k): v for k, v in scores.items()}, "head": "logistic regression", "mlp_score": None}
    chosen, words, best = linear, None, max(scores.values())
    h = cfg.training.head
    if h.words and y.get("validation") is not None:
        head, fitted = fit_words_head(x["train"], y["train"], texts["train"], labels, cfg)
        predicted = np.asarray(labels)[
            words_probabilities(head, fitted, x["validation"], texts["validation"]).argmax(1)
        ]
        meta["scores"][WORDS] = score = macro_f1(y["validation"], predicted, labels)
        if score > best:
            chosen, words, best = head, fitted, score
            meta |= {"head": WORDS_HEAD, "C": h.words_c, "probe_C": c}
    if h.try_mlp:
        mlp, mlp_score = fit_mlp_head(x, y, labels, cfg)
        meta["mlp_score"] = mlp_score
        if mlp_score > best:
            return mlp, linear, meta | {"head": f"MLP ({h.mlp_hidden} hidden)", "C": c}, None
    return chosen, linear, meta, words


def _frozen_meta(features: FeatureSet, cfg: ThawConfig, head: str, c: float, trained_on: tuple[str, ...]) -> dict:
    return {
        "rung": FROZEN.name,
        "kind": "head_on_frozen_encoder",
        "backbone": json.loads(features.backbone.to_json()),
        "pooling": cfg.backbone.pooling,
        "max_length": cfg.backbone.max_length,
        "input_form": input_form(cfg.curation.pii, cfg.data.max_text_chars),
        "head": head,
        "head_C": c,
        "trained_on": list(trained_on),
    }


def _named(by_setting: dict) -> dict[str, float]:
    """Candidate heads' figures keyed by the heads' names (C values and ``WORDS``)."""
    return {(WORDS_HEAD if k == WORDS else f"logistic regression C={k}"): v for k, v in by_setting.items()}


def _details(
    head: str, c: float, scores: dict, mlp_score, cache_hits: dict, trained_on, folds: int = 0, probe_c=None
) -> RungDetails:
    words = {"words": True, "probe_C": probe_c} if head == WORDS_HEAD else {}  # the linear probe's C
    return RungDetails(
        method=f"{head} on the frozen backbone",
        frozen="the whole backbone",
        trainable_fraction_of_backbone=0.0,
        settings={"head_C": c, **words},
        selection_scores={**_named(scores), **({"MLP": mlp_score} if mlp_score is not None else {})},
        cache_hits=cache_hits,
        trained_on=tuple(trained_on),
        folds=folds,
    )


def _holdout(features: FeatureSet, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig, run_dir: Path):
    rows = {s: curated.read(cfg.root, s) for s in ("train", "validation")}
    y = {s: np.asarray(r.labels) for s, r in rows.items()}
    texts = {s: list(r.texts) for s, r in rows.items()}
    x = {s: np.load(features.paths[s]) for s in ("train", "validation")}
    head, linear, fit_meta, words, head_hit = _cached_heads(
        features, curated, labels, cfg, lambda: _fit_frozen_heads(x, y, texts, labels, cfg)
    )
    if words is not None:
        probabilities = words_probabilities(head, words, x["validation"], texts["validation"])
    else:
        probabilities = head_probabilities(x["validation"], head)
    predictions = np.asarray(labels)[probabilities.argmax(1)]
    model_dir = frozen_model_dir(run_dir)
    meta = _frozen_meta(features, cfg, fit_meta["head"], fit_meta["C"], ("train",))
    save_head(model_dir, head, (linear["weight"], linear["bias"]), labels, meta, words)
    details = _details(
        fit_meta["head"],
        fit_meta["C"],
        fit_meta["scores"],
        fit_meta["mlp_score"],
        {**features.cache_hits, "head": head_hit},
        ("train",),
        probe_c=fit_meta.get("probe_C"),
    )
    metrics = score_predictions(y["validation"], predictions, labels, cfg)
    params = int(sum(v.size for v in head.values()))
    return TrainedRung(FROZEN.name, model_dir, metrics, tuple(predictions), params, details)


def _cross_validated(
    features: FeatureSet,
    curated: DatasetVersion,
    labels: tuple[str, ...],
    cfg: ThawConfig,
    run_dir: Path,
    evaluation: EvaluationPlan,
) -> TrainedRung:
    """Logistic-regression heads on every fold for each C (a repeat's folds side by side,
    one per core), and the head over features and word n-grams (``head.words``); the best
    mean fold score wins, on a tie the lower mean fold log-loss, then the simpler head
    (``cross_validation.best_setting``). The fold heads of the best C
    are kept (the adapted rungs' folds start from them) and the final head is fit on all
    of train + validation."""
    from safetensors.numpy import save_file

    from tasks.ladder.cross_validation import (
        FoldOutput,
        best_setting,
        cross_validate_grid,
        cross_validated_metrics,
        gate_metric,
        in_label_order,
        mean_fold_loss,
        pool,
    )

    rows = pool(curated, cfg)
    x = np.concatenate([np.load(features.paths[s]) for s in ("train", "validation")])
    y = np.asarray(rows.labels)
    h, metric = cfg.training.head, gate_metric(cfg)
    heads = {}

    def fit_predict_grid(name, kept, held):
        predicted = {}
        for c, clf in logistic_path(x[list(kept)], y[list(kept)], h.c_grid, h.max_iter, cfg.training.seed):
            heads[(c, name)] = linear_head_of(clf, labels, x.shape[1])
            log_probabilities = clf.predict_log_proba(x[list(held)])
            predicted_labels = tuple(clf.classes_[log_probabilities.argmax(1)])
            predicted[c] = FoldOutput(predicted_labels, in_label_order(log_probabilities, clf.classes_, labels))
        if h.words:
            head, words = fit_words_head(x[list(kept)], y[list(kept)], [rows.texts[i] for i in kept], labels, cfg)
            probabilities = words_probabilities(head, words, x[list(held)], [rows.texts[i] for i in held])
            with np.errstate(divide="ignore"):
                log_probabilities = np.log(probabilities)
            predicted[WORDS] = FoldOutput(tuple(np.asarray(labels)[probabilities.argmax(1)]), log_probabilities)
        return predicted

    grid = (*h.c_grid, WORDS) if h.words else h.c_grid
    with one_blas_thread():  # so the folds side by side get a core each
        runs = cross_validate_grid(
            evaluation, rows.labels, labels, grid, fit_predict_grid, metric, workers=usable_cores()
        )
    scores = {c: float(np.mean(list(r.fold_scores.values()))) for c, r in runs.items()}
    losses = {c: loss for c, r in runs.items() if (loss := mean_fold_loss(r)) is not None}
    # the best C of the features-only head (the smaller C on a tie of metric and log-loss):
    # its fold heads start the adapted rungs' folds
    best_c = best_setting({c: runs[c] for c in h.c_grid}, sorted(h.c_grid))
    # then the head over word n-grams, when it does better (the features-only head on a tie of both)
    best = best_setting({best_c: runs[best_c], WORDS: runs[WORDS]}, (best_c, WORDS)) if h.words else best_c
    folds_dir = frozen_model_dir(run_dir) / "folds"
    folds_dir.mkdir(parents=True, exist_ok=True)
    for name in runs[best_c].fold_scores:
        weight, bias = heads[(best_c, name)]
        save_file({"weight": weight, "bias": bias}, str(folds_dir / f"{name}.safetensors"))
    head, linear, words, name = fit_final_head(x, y, list(rows.texts), labels, best_c, best == WORDS, cfg)
    c = h.words_c if best == WORDS else best_c
    meta = _frozen_meta(features, cfg, name, c, ("train", "validation"))
    save_head(frozen_model_dir(run_dir), head, (linear["weight"], linear["bias"]), labels, meta, words)
    chosen = runs[best]
    details = _details(name, c, scores, None, dict(features.cache_hits), ("train", "validation"), chosen.folds, best_c)
    details = replace(details, selection_losses=_named(losses))
    metrics = cross_validated_metrics(rows.labels, chosen, labels, evaluation, cfg)
    params = int(sum(v.size for v in head.values()))
    return TrainedRung(
        FROZEN.name,
        frozen_model_dir(run_dir),
        metrics,
        chosen.predictions,
        params,
        details,
        chosen.fold_scores,
        chosen.fold_losses,
    )


@task(name="train-frozen-rung")
def train_frozen_rung(features: FeatureSet, ctx: LadderContext) -> TrainedRung:
    """Fit the head on frozen features (logistic regression, or an MLP when it does better
    on validation); the backbone is untouched. Scored on the validation split, or by
    cross-validation over train + validation (linear heads only) when the plan says."""
    if ctx.evaluation.cross_validated:
        return _cross_validated(features, ctx.curated, ctx.labels, ctx.cfg, ctx.run_dir, ctx.evaluation)
    return _holdout(features, ctx.curated, ctx.labels, ctx.cfg, ctx.run_dir)
