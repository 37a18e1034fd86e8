"""The choice among a rung's candidate settings under cross-validation: the best mean
fold score, then the lower mean fold log-loss, then the simplest."""

from tasks.ladder.cross_validation import CrossValidated, best_setting


def scored(scores: list[float], losses: list[float] | None = None) -> CrossValidated:
    names = [f"r{i // 5}f{i % 5}" for i in range(len(scores))]
    fold_losses = dict(zip(names, losses, strict=True)) if losses is not None else {}
    return CrossValidated(dict(zip(names, scores, strict=True)), (), len(scores), fold_losses)


def test_the_best_mean_score_wins_whatever_its_log_loss():
    runs = {"simple": scored([0.8] * 10, [0.1] * 10), "rich": scored([0.9] * 10, [0.9] * 10)}
    assert best_setting(runs, ["simple", "rich"]) == "rich"


def test_a_tie_on_the_score_goes_to_the_lower_log_loss():
    # folds of 4 mails: both heads score 0.707 on average, the richer one surer of the truth
    runs = {"simple": scored([0.707] * 10, [0.69] * 10), "rich": scored([0.707] * 10, [0.57] * 10)}
    assert best_setting(runs, ["simple", "rich"]) == "rich"
    runs["rich"] = scored([0.707] * 10, [0.75] * 10)
    assert best_setting(runs, ["simple", "rich"]) == "simple"


def test_a_tie_on_both_goes_to_the_simplest():
    runs = {3.0: scored([0.5, 1.0] * 5, [0.3] * 10), 0.3: scored([1.0, 0.5] * 5, [0.3] * 10)}
    assert best_setting(runs, [0.3, 3.0]) == 0.3
    assert best_setting(runs, [3.0, 0.3]) == 3.0


def test_means_summed_in_another_order_still_tie():
    # 0.1 + 0.2 + 0.3 and 0.3 + 0.2 + 0.1 differ in the last bit of a double
    runs = {"a": scored([0.1, 0.2, 0.3], [0.5] * 3), "b": scored([0.3, 0.2, 0.1], [0.4] * 3)}
    assert sum(runs["a"].fold_scores.values()) != sum(runs["b"].fold_scores.values())
    assert best_setting(runs, ["a", "b"]) == "b"  # decided by the log-loss, not by rounding


def test_folds_without_probabilities_tie_after_those_with_them():
    runs = {"labels only": scored([0.7] * 5), "with losses": scored([0.7] * 5, [0.4] * 5)}
    assert best_setting(runs, ["labels only", "with losses"]) == "with losses"
    assert best_setting({"x": scored([0.7] * 5), "y": scored([0.7] * 5)}, ["y", "x"]) == "y"
