"""How the frozen rung chooses its head at 10 per class, and what each rule's choice
scores on test: a measurement of the choice itself, on the same rows in one run.

``python -m bench.head_choice spamassassin clinc150 goemotions`` draws 10 training rows
per class (seeds 13-17, the draws of ``bench.ladder SET:10shot:SEED``), puts them in
the model's text form (PII scrubbed to entity types, ``thaw.pii.masking``), embeds them
with the plain baseline's encoder (fp32) and cross-validates the frozen rung's
candidate heads on thaw's own folds (``EvaluationPlan.fold_rows``, 2 x 5) with the
rung's fits: logistic regression on the features at each C of ``head.c_grid``, and one
logistic regression on the features beside TF-IDF word and character n-grams
(``thaw.words``) at ``head.words_c``, with the features' block weighted 1, 0.5 or 0.25
(a lower weight leans on the words; 1 is the shipped head). Then, per draw:

- each candidate's mean fold macro-F1 (the gate's metric), its mean recalibrated fold
  log-loss (``recalibrated_fold_losses``) and its test accuracy when fit on all 20 rows;
- the head each rule chooses, and that head's test accuracy:
  - "simpler on a tie": the best mean fold score, the simpler head on a tie (thaw before
    c900338);
  - "log-loss on a tie": ``cross_validation.best_setting`` as the rung calls it;
  - "weights chosen too": the same rule with the lower feature weights as candidates;
  - "log-loss within one se": between the best C and the shipped word head, a lead on
    the mean fold score within one standard error of the fold differences (Nadeau and
    Bengio's, as the gate reads two rungs) counts as a tie, which the lower mean fold
    log-loss breaks (tried and not kept: ``docs/benchmarks.md``, "Ties
    between heads").

``--draws 18-22`` (or ``--draws 13,15``) takes other draws than 13-17.

Nothing is tuned on test: the candidates and rules are fixed before the run.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from bench import ladder, plain_baseline

DRAWS = (13, 14, 15, 16, 17)
FEATURE_WEIGHTS = (1.0, 0.5, 0.25)


def _words_name(weight: float) -> str:
    return f"words x{weight:g}"


def _fit_words(x: np.ndarray, texts: list[str], y, labels: tuple[str, ...], weight: float, cfg):
    """The rung's head over features and word n-grams, the features' block scaled by
    ``weight`` (folded into the head's weights, so it serves as the shipped head does)."""
    from thaw.words import WordFeatures, WordSettings, fit_logistic, unit_rows

    h = cfg.training.head
    words, matrix = WordFeatures.fit_transform(texts, WordSettings(max_features=h.words_max_features))
    head = fit_logistic(unit_rows(x) * weight, matrix, list(y), labels, h.words_c, h.max_iter)
    return head | {"weight": head["weight"] * weight}, words


def _linear(clf, labels: tuple[str, ...]):
    """Class probabilities of a fitted logistic regression, columns in ``labels`` order,
    through the rung's own conversion to a saved head (``thaw.heads.linear_head_of``)."""
    from thaw.heads import linear_head_of
    from thaw.modeling import softmax_head

    weight, bias = linear_head_of(clf, labels, clf.coef_.shape[1])
    return lambda xs, _texts: softmax_head(xs, weight, bias)


def _fitter(labels: tuple[str, ...], cfg):
    """``fit(x, texts, y)`` -> {candidate: probabilities(x, texts)}: the features-only head
    at each C of the grid, and the head over words at each feature weight."""
    from thaw.heads import logistic_path
    from thaw.modeling import softmax
    from thaw.words import words_logits

    h = cfg.training.head

    def fit(x, texts, y):
        models = {c: _linear(clf, labels) for c, clf in logistic_path(x, y, h.c_grid, h.max_iter, cfg.training.seed)}
        for weight in FEATURE_WEIGHTS:
            head, words = _fit_words(x, texts, y, labels, weight, cfg)
            models[_words_name(weight)] = lambda xs, ts, head=head, words=words: softmax(
                words_logits(xs, words.transform(ts), head)
            )
        return models

    return fit


def _cross_validated(x, texts, y, labels, fit, cfg) -> dict:
    """The candidates on the folds thaw plans for these rows (``evaluation_plan`` with no
    validation rows: 2 x 5, fewer folds when a class has fewer rows; seed 13), as
    ``cross_validate_grid`` scores a rung."""
    from collections import Counter

    from tasks.ladder.cross_validation import FoldOutput, cross_validate_grid, gate_metric
    from thaw.decision_table import evaluation_plan

    ladder_cfg = cfg.training.ladder
    plan = evaluation_plan(
        len(labels),
        0.0,
        ladder_cfg.min_detectable_gain,
        ladder_cfg.alpha,
        ladder_cfg.cv_folds,
        ladder_cfg.cv_repeats,
        13,
        min(Counter(y.tolist()).values()),
    )

    def fit_predict_grid(_name, kept, held):
        kept, held = list(kept), list(held)
        out = {}
        for setting, model in fit(x[kept], [texts[i] for i in kept], y[kept]).items():
            probabilities = model(x[held], [texts[i] for i in held])
            with np.errstate(divide="ignore"):
                out[setting] = FoldOutput(tuple(np.asarray(labels)[probabilities.argmax(1)]), np.log(probabilities))
        return out

    grid = (*cfg.training.head.c_grid, *(_words_name(w) for w in FEATURE_WEIGHTS))
    return cross_validate_grid(plan, list(y), labels, grid, fit_predict_grid, gate_metric(cfg))


def _within_one_se(runs: dict, simplest_first: tuple) -> object:
    """The setting with the lowest mean fold log-loss among those whose mean fold score is
    within one standard error of the best's (``thaw.gate.cross_validated_comparison`` on
    the same folds); the first in ``simplest_first`` on a tie."""
    from tasks.ladder.cross_validation import mean_fold_loss
    from thaw.gate import cross_validated_comparison

    def mean(s) -> float:
        return round(float(np.mean(list(runs[s].fold_scores.values()))), 9)

    best = max(simplest_first, key=lambda s: (mean(s), -simplest_first.index(s)))
    folds = sorted(runs[best].fold_scores)
    fraction = (runs[best].folds - 1) / runs[best].folds

    def close(s) -> bool:
        scores = [[runs[r].fold_scores[f] for f in folds] for r in (s, best)]
        cmp = cross_validated_comparison(s, best, scores[0], scores[1], fraction)
        return s == best or cmp.se is None or cmp.delta <= cmp.se

    def loss(s) -> float:
        value = mean_fold_loss(runs[s])
        return round(value, 9) if value is not None else np.inf

    return min((s for s in simplest_first if close(s)), key=lambda s: (loss(s), simplest_first.index(s)))


def _choices(runs: dict, c_grid: tuple[float, ...]) -> dict[str, object]:
    """The head each rule chooses from the cross-validated candidates."""
    from tasks.ladder.cross_validation import best_setting

    score = {s: float(np.mean(list(r.fold_scores.values()))) for s, r in runs.items()}
    shipped, weighted = _words_name(1.0), tuple(_words_name(w) for w in FEATURE_WEIGHTS)
    old_c = max(c_grid, key=lambda c: (score[c], -c))
    best_c = best_setting({c: runs[c] for c in c_grid}, sorted(c_grid))
    return {
        "simpler on a tie": shipped if score[shipped] > score[old_c] else old_c,
        "log-loss on a tie": best_setting({best_c: runs[best_c], shipped: runs[shipped]}, (best_c, shipped)),
        "weights chosen too": best_setting(
            {best_c: runs[best_c]} | {s: runs[s] for s in weighted}, (best_c, *weighted)
        ),
        "log-loss within one se": _within_one_se(runs, (best_c, shipped)),
    }


def _name(setting) -> str:
    return setting if isinstance(setting, str) else f"C={setting:g}"


def probe(name: str, encoder, seeds: tuple[int, ...] = DRAWS) -> list[str]:
    from sklearn.metrics import accuracy_score

    from tasks.ladder.cross_validation import mean_fold_loss
    from thaw.config import PiiConfig, ThawConfig
    from thaw.pii.masking import mask_texts

    cfg = ThawConfig()
    splits = ladder.SETS[name][1]()
    test_texts = mask_texts([t for t, _ in splits["test"]], PiiConfig())
    x_test = plain_baseline.embed(test_texts, *encoder)
    y_test = np.asarray([y for _, y in splits["test"]])
    lines = []
    for seed in seeds:
        rows = ladder.few_per_class(splits["train"], 10, seed)
        texts = mask_texts([t for t, _ in rows], PiiConfig())
        y = np.asarray([label for _, label in rows])
        labels = tuple(sorted(set(y)))
        x = plain_baseline.embed(texts, *encoder)
        fit = _fitter(labels, cfg)
        runs = _cross_validated(x, texts, y, labels, fit, cfg)
        test = {
            s: accuracy_score(y_test, np.asarray(labels)[model(x_test, test_texts).argmax(1)])
            for s, model in fit(x, texts, y).items()
        }
        each = "; ".join(
            f"{_name(s)} {np.mean(list(r.fold_scores.values())):.3f}/{mean_fold_loss(r):.3f}/{test[s]:.4f}"
            for s, r in runs.items()
        )
        chosen = "; ".join(
            f"{rule}: {_name(s)} {test[s]:.4f}" for rule, s in _choices(runs, cfg.training.head.c_grid).items()
        )
        lines.append(f"{name} draw {seed} (fold macro-F1 / fold log-loss / test accuracy): {each}\n  chosen: {chosen}")
        print(lines[-1], flush=True)
    return lines


def draws(text: str) -> tuple[int, ...]:
    """``18-22`` or ``13,15``: the draws' seeds; ValueError naming the text otherwise."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            seeds = tuple(range(first, last + 1))
        else:
            seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds:
        raise ValueError(f"--draws {text!r}: give seeds as 18-22 or 13,15")
    return seeds


def main(args: list[str]) -> int | str:
    seeds = DRAWS
    if "--draws" in args:
        at = args.index("--draws")
        try:
            seeds = draws(args[at + 1] if at + 1 < len(args) else "")
        except ValueError as exc:
            return str(exc)
        args = args[:at] + args[at + 2 :]
    return ladder.probe_sets(args, functools.partial(probe, seeds=seeds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
