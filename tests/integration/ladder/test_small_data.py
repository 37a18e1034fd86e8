"""The ladder on the data users actually have: two rows per class and two thousand.
Tiny random encoder; real gate, real cross-validation, real contrastive few-shot rung."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.projects import TEST_SERVING
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, TrackedFile, file_md5
from thaw.rungs import LadderContext

pytestmark = pytest.mark.integration

KEYWORDS = {"refund": "money", "password": "login", "delivery": "shipping", "cancel": "account"}
WORDS = "please my the i a to is was it not help change block stolen where when new".split()
# in the tiny encoder's vocabulary, no keyword among them
FILLER = [*WORDS, *"card lost reset order subscription address payment app".split()]


def _row_text(rng: random.Random, key: str, filler: int) -> str:
    if filler <= 3:
        return " ".join([key, *rng.sample(WORDS, filler)])
    words = rng.choices(FILLER, k=filler)  # the keyword anywhere among many other words
    words.insert(rng.randrange(filler + 1), key)
    return " ".join(words)


def make_splits(
    workspace: Path, per_class: dict[str, int], seed: int = 0, slices: bool = False, filler: int = 3
) -> DatasetVersion:
    """Curated splits with ``per_class[split]`` rows of each of four keyword classes: the
    keyword and ``filler`` other words (past 3, drawn with repeats, the keyword among
    them at random: its share of a mean-pooled feature is small)."""
    rng = random.Random(seed)
    files = {}
    for split, n in per_class.items():
        rows = []
        for key, label in KEYWORDS.items():
            for i in range(n):
                row = {"id": f"{split}-{label}-{i}", "text": _row_text(rng, key, filler), "label": label}
                if slices:
                    row["slice"] = rng.choice(["email", "chat"])
                rows.append(row)
        path = workspace / "datasets" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False)
        files[split] = TrackedFile(str(path.relative_to(workspace)), file_md5(path), path.stat().st_size)
    return DatasetVersion("datasets", "x", files, "none")


def config(workspace: Path, encoder: Path, head: dict | None = None, **ladder) -> ThawConfig:
    """A ladder on the keyword classes. Its frozen head is features-only unless ``head``
    says otherwise: on the random encoder that head is weak, so the ladder climbs (with
    word n-grams beside the features the keywords make it right on every fold)."""
    head = {"words": False} if head is None else head
    return ThawConfig.model_validate(
        {
            "workspace": str(workspace),
            "backbone": {"name": "tiny", "path": str(encoder), "max_length": 32},
            "serving": TEST_SERVING,
            "training": {
                "head": head,
                "ladder": {
                    "metric": "accuracy",
                    "target": 0.999,
                    "cv_repeats": 1,
                    "finetune": {"epochs": 2, "batch_size": 8},
                    "fewshot": {"epochs": 2, "classes_per_batch": 4, "rows_per_class": 2, "end_to_end_epochs": 2},
                    **ladder,
                },
            },
        }
    )


LABELS = tuple(sorted(KEYWORDS.values()))


def climb(workspace, cfg, curated):
    from flows.adaptation_ladder import climb_ladder
    from tasks.ladder.features import extract_frozen_features

    features = extract_frozen_features.fn(curated, cfg)
    (workspace / "run").mkdir(exist_ok=True)
    return climb_ladder(features, curated, LABELS, cfg, workspace / "run")


def test_two_rows_per_class_cross_validate_pick_the_few_shot_rung_and_register_a_refit(
    workspace, tiny_encoder, prefect_harness
):
    from thaw.serving import ThawPredictor

    curated = make_splits(workspace, {"train": 2, "validation": 1, "test": 1}, slices=True)
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "fewshot", "peft"])
    result = climb(workspace, cfg, curated)
    note = json.loads((workspace / "run" / "transfer_note.json").read_text())
    # small data: validation cannot tell rungs apart, so folds over train + validation
    assert note["scored_by"]["mode"] == "cross-validation" and note["scored_by"]["folds"] == 3
    # the note states label counts, the domain-gap measures and the suggested first move
    data = note["data"]
    assert (data["rows_per_class_min"], data["rows_per_class_median"]) == (2, 2.0)
    assert 0 <= data["fragmented_word_share"] <= 1 and 0 <= data["neighbour_accuracy"] <= 1
    assert data["frozen_minus_scratch"] is not None
    assert note["decision_table"]["suggestion"] == "fewshot" and note["decision_table"]["rungs"][0] == "fewshot"
    assert note["diagnostics"]["worst_classes"] and "slices" in note["diagnostics"]
    rows = {r["rung"]: r for r in note["validation"]}
    for r in rows.values():  # intervals hold their estimate, even on 12 pooled rows
        assert r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"]
        assert r["folds"] == 3
        # the gate's per-fold evidence, named as cross_validate names the folds
        assert sorted(r["fold_scores"]) == ["cv-r0-f0", "cv-r0-f1", "cv-r0-f2"]
        assert all(0 <= v <= 1 for v in r["fold_scores"].values())
        # the headline figure is the mean the gate compares fold by fold (every repeat's folds)
        m = note["metric"]
        assert r[m] == pytest.approx(np.mean(list(r["fold_scores"].values())))
        assert r[f"{m}_low"] <= r[m] <= r[f"{m}_high"]
    markdown = (workspace / "run" / "transfer_note.md").read_text()
    # when the gate cannot tell few-shot from frozen on 12 rows, the note says so and what was registered
    (gate,) = [d["comparison"] for d in note["decisions"] if d["after"] == "fewshot"]
    if gate["low"] < 0 < gate["high"]:
        outcome = {"fewshot": "fewshot was selected all the same", "frozen": "the simpler rung, frozen, was kept"}
        assert note["undecided"].startswith("undecided: on the cross-validation folds, the gain of fewshot over frozen")
        assert outcome[result.selection.rung] in note["undecided"] and note["undecided"] in markdown
    else:
        assert note["undecided"] is None and "undecided" not in markdown
    assert f"| fold | {' | '.join(rows)} |" in markdown
    # log-loss beside the metric for the rungs that give probabilities, on the same folds
    assert rows["scratch"]["fold_log_loss"] == {}
    for rung in ("frozen", "fewshot"):
        assert sorted(rows[rung]["fold_log_loss"]) == sorted(rows[rung]["fold_scores"])
        assert all(0 <= v <= -np.log(1e-6) for v in rows[rung]["fold_log_loss"].values())
    assert gate["log_loss"]["delta"] == pytest.approx(
        np.mean(
            [
                rows["frozen"]["fold_log_loss"][n] - rows["fewshot"]["fold_log_loss"][n]
                for n in rows["fewshot"]["fold_scores"]
            ]
        )
    )
    assert "| fold | frozen | fewshot |" in markdown
    frozen_first = rows["frozen"]["fold_scores"]["cv-r0-f0"]
    assert f"| cv-r0-f0 | {rows['scratch']['fold_scores']['cv-r0-f0']:.4f} | {frozen_first:.4f} |" in markdown
    assert "fewshot" in rows and rows["fewshot"]["movement"] is not None  # the frozen rung is weak here: it climbed
    fewshot = next(r for r in result.trained if r.rung == "fewshot")
    assert fewshot.details.settings["label_name_rows"] == len(LABELS)  # "money", "login", ...: words, one row each
    # every fold ends with the end-to-end passes, a fixed count (a fold's rows are for scoring only)
    assert fewshot.details.settings["end_to_end_epochs"] == 2 and fewshot.details.epochs_run == 2
    # the registered model learned from every labelled row and serves
    assert result.final.details.trained_on == ("train", "validation")
    assert note["registered"]["trained_on"] == ["train", "validation"]
    assert note["registered"]["refit"] is (result.selection.rung != "frozen")  # the frozen rung was fit on all rows
    probs = ThawPredictor(result.final.model_dir).probabilities(["refund please", "password help"])
    assert probs.shape == (2, len(LABELS)) and np.allclose(probs.sum(1), 1)
    assert (workspace / "run" / "ladder_chart.png").stat().st_size > 1000
    # had the gate picked the few-shot rung, whose folds kept no model, it is refit too
    from tasks.ladder.rung_training import refit_selected_rung

    picked = dataclasses.replace(result.selection, rung="fewshot")
    ctx = LadderContext(curated, LABELS, cfg, workspace / "run", result.evaluation)
    refit = refit_selected_rung.fn(picked, result.trained, ctx, seconds_left=0.0)  # no fold model to fall back on
    assert refit.details.refit_skipped is None
    assert refit.model_dir is not None and refit.details.trained_on == ("train", "validation")
    assert ThawPredictor(refit.model_dir).probabilities(["refund please"]).shape == (1, len(LABELS))


def test_on_two_rows_per_class_the_frozen_rung_reads_words_and_its_refit_serves_them(
    workspace, tiny_encoder, prefect_harness
):
    from tasks.ladder.frozen_rung import WORDS_HEAD
    from thaw.serving import ThawPredictor

    curated = make_splits(workspace, {"train": 2, "validation": 1, "test": 1})
    cfg = config(workspace, tiny_encoder, head={"words": True}, rungs=["frozen"])
    result = climb(workspace, cfg, curated)
    (frozen,) = result.trained
    scores = frozen.details.selection_scores
    # the keywords decide the class: words beside the random encoder's features score
    # above the features alone on the folds, so that head is the frozen rung's
    assert scores[WORDS_HEAD] > max(v for k, v in scores.items() if k != WORDS_HEAD)
    # each candidate's mean fold log-loss, the tie-break, is reported beside its score
    losses = frozen.details.selection_losses
    assert set(losses) == set(scores) and all(np.isfinite(v) and v >= 0 for v in losses.values())
    assert frozen.details.settings["words"] and frozen.details.settings["head_C"] == cfg.training.head.words_c
    assert frozen.details.method.startswith(WORDS_HEAD)
    for model_dir in (frozen.model_dir, result.final.model_dir):
        assert (model_dir / "words.json").is_file() and (model_dir / "words.safetensors").is_file()
        assert json.loads((model_dir / "model.json").read_text())["head"] == WORDS_HEAD
        # the linear probe the adapted rungs would start from stays features-only
        from safetensors.numpy import load_file

        probe = load_file(str(model_dir / "linear_head.safetensors"))
        assert set(probe) == {"weight", "bias"} and probe["weight"].shape[1] == 32
    served = ThawPredictor(result.final.model_dir).predict(
        ["refund where is it", "password i forgot", "delivery late", "cancel it now"]
    )
    assert served["label"].tolist() == ["money", "login", "shipping", "account"]


def test_scored_on_validation_the_words_head_is_refit_on_every_row_and_served(workspace, tiny_encoder, prefect_harness):
    from tasks.ladder.frozen_rung import WORDS_HEAD
    from thaw.serving import ThawPredictor

    curated = make_splits(workspace, {"train": 500, "validation": 120, "test": 20}, filler=20)
    cfg = config(workspace, tiny_encoder, head={"words": True}, rungs=["frozen"], min_detectable_gain=0.1)
    result = climb(workspace, cfg, curated)
    (frozen,) = result.trained
    assert json.loads((workspace / "run" / "transfer_note.json").read_text())["scored_by"]["mode"] == "holdout"
    assert frozen.details.settings["words"] and frozen.details.trained_on == ("train",)
    scores = frozen.details.selection_scores
    # one keyword among 20 other words: the random encoder's mean-pooled features lose
    # it, the word n-grams do not
    assert scores[WORDS_HEAD] == 1.0 > max(v for k, v in scores.items() if k != WORDS_HEAD)
    final = result.final
    assert final.details.trained_on == ("train", "validation") and final.details.method.startswith(WORDS_HEAD)
    assert json.loads((final.model_dir / "model.json").read_text())["head"] == WORDS_HEAD
    served = ThawPredictor(final.model_dir).predict(["my refund", "the password", "a delivery", "cancel"])
    assert served["label"].tolist() == ["money", "login", "shipping", "account"]


def test_two_thousand_rows_score_on_validation_and_climb_as_the_table_says(workspace, tiny_encoder, prefect_harness):
    curated = make_splits(workspace, {"train": 500, "validation": 120, "test": 20})
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "peft"], min_detectable_gain=0.1)
    result = climb(workspace, cfg, curated)
    note = json.loads((workspace / "run" / "transfer_note.json").read_text())
    assert note["scored_by"]["mode"] == "holdout"
    assert all(r["fold_scores"] == {} for r in note["validation"])  # no folds, no per-fold table
    assert "| fold |" not in (workspace / "run" / "transfer_note.md").read_text()
    assert note["data"]["rows_per_class_median"] == 500
    # many labels: the table skips PEFT (partial/full are not configured here): nothing to climb
    assert note["decision_table"]["suggestion"] == "full" and note["decision_table"]["rungs"] == []
    assert [r.rung for r in result.trained] == ["frozen"]
    # scored on hold-out, then refit on every labelled row (refit: always, the default)
    assert result.trained[0].details.trained_on == ("train",)
    assert result.final.details.trained_on == ("train", "validation")


def test_the_training_file_supplies_only_the_missing_split_and_no_row_is_lost(workspace):
    from tasks.curation.curate import _split

    frame = pd.DataFrame(
        {"id": [str(i) for i in range(100)], "text": [f"t{i}" for i in range(100)], "label": ["a", "b"] * 50}
    )
    given_test = pd.DataFrame({"id": ["x1", "x2"], "text": ["u1", "u2"], "label": ["a", "b"]})
    cfg = ThawConfig()
    splits = _split({"train": frame, "test": given_test}, cfg)
    assert splits["test"]["id"].tolist() == ["x1", "x2"]
    assert len(splits["train"]) + len(splits["validation"]) == 100  # nothing carved out and dropped
    assert set(splits["train"]["id"]).isdisjoint(splits["validation"]["id"])
