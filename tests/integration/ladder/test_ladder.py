"""The adaptation ladder with a tiny random encoder: surfaces, adapters, resume, cache, gate."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.projects import TEST_SERVING
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, TrackedFile, file_md5
from thaw.rungs import EvaluationPlan, LadderContext

pytestmark = pytest.mark.integration

KEYWORDS = {"refund": "money", "password": "login", "delivery": "shipping"}


def make_task(workspace: Path, kind: str, n: int = 60, seed: int = 0) -> DatasetVersion:
    """Curated splits on disk: 'strong' labels follow a keyword, 'weak' labels are random."""
    rng = random.Random(seed)
    words = "please my the i a to is was it not help account change block stolen where when new".split()
    files = {}
    for split, size in (("train", n), ("validation", n // 2), ("test", n // 2)):
        rows = []
        for i in range(size):
            key = rng.choice(sorted(KEYWORDS))
            # strong: the keyword dominates the text; weak: the label ignores the text
            text = (
                " ".join([key, key, rng.choice(words)]) if kind == "strong" else " ".join(rng.sample(words, 4) + [key])
            )
            label = KEYWORDS[key] if kind == "strong" else rng.choice(sorted(KEYWORDS.values()))
            rows.append({"id": f"{split}-{i}", "text": text, "label": label})
        path = workspace / "datasets" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, index=False)
        files[split] = TrackedFile(str(path.relative_to(workspace)), file_md5(path), path.stat().st_size)
    return DatasetVersion("datasets", "x", files, "none")


def config(workspace: Path, encoder: Path, **ladder) -> ThawConfig:
    return ThawConfig.model_validate(
        {
            "workspace": str(workspace),
            "data": {"text_column": "text", "label_column": "label", "id_column": "id"},
            "backbone": {"name": "tiny", "path": str(encoder), "max_length": 32},
            "serving": TEST_SERVING,
            "training": {
                "head": {"c_grid": [1000.0]},
                "ladder": {
                    "rungs": ["frozen", "peft"],
                    "metric": "accuracy",
                    "finetune": {"epochs": 2, "batch_size": 8},
                    **ladder,
                },
            },
        }
    )


LABELS = tuple(sorted(KEYWORDS.values()))


def frozen_rung(workspace, cfg, curated):
    from tasks.ladder.features import extract_frozen_features
    from tasks.ladder.frozen_rung import train_frozen_rung

    features = extract_frozen_features.fn(curated, cfg)
    return features, train_frozen_rung.fn(
        features, LadderContext(curated, LABELS, cfg, workspace / "run", EvaluationPlan.holdout())
    )


@pytest.mark.parametrize("method", ["lora", "ia3", "bitfit"])
def test_saved_and_reloaded_adapter_gives_identical_outputs(workspace, tiny_encoder, method):
    from tasks.ladder.finetuning import fit_adapted_rung, holdout_fit
    from thaw.serving import ThawPredictor

    curated = make_task(workspace, "strong")
    cfg = config(workspace, tiny_encoder, peft={"method": method}, finetune={"epochs": 1, "batch_size": 8})
    _, frozen = frozen_rung(workspace, cfg, curated)
    rung = fit_adapted_rung(holdout_fit("peft", workspace / "run"), curated, LABELS, cfg)
    saved = sorted(p.name for p in rung.model_dir.iterdir())
    assert ("adapter" in saved) == (method != "bitfit") and ("delta.safetensors" in saved) == (method == "bitfit")
    texts = pd.read_csv(workspace / curated.files["validation"].path)["text"].tolist()
    first = ThawPredictor(rung.model_dir).probabilities(texts)
    again = ThawPredictor(rung.model_dir).probabilities(texts)
    assert np.array_equal(first, again)
    assert list(np.asarray(LABELS)[first.argmax(1)]) == list(rung.validation_predictions)


KILL_SCRIPT = """
import os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.integration.ladder.test_ladder import config, make_task, frozen_rung, LABELS
from tasks.ladder.finetuning import fit_adapted_rung, holdout_fit
ws, enc = Path({ws!r}), Path({enc!r})
cfg = config(ws, enc, rungs=["frozen", {rung!r}], finetune={{**{finetune!r}, "checkpoint_seconds": 0}})
curated = make_task(ws, "strong")
_, frozen = frozen_rung(ws, cfg, curated)
def die(epoch):
    if epoch == 0:
        os.kill(os.getpid(), 9)   # a real SIGKILL after the first checkpoint
fit_adapted_rung(holdout_fit({rung!r}, ws / "run"), curated, LABELS, cfg, on_epoch_end=die)
"""


@pytest.mark.parametrize(
    ("rung", "top_k", "replayed"),
    [("full", 2, 0), ("partial", 1, 1)],  # partial on the top block of two: the lower one is replayed
)
def test_killed_finetuning_resumes_from_its_checkpoint(workspace, tiny_encoder, tmp_path, rung, top_k, replayed):
    from safetensors.numpy import load_file

    from tasks.ladder.finetuning import fit_adapted_rung, holdout_fit

    finetune = {"epochs": 3, "batch_size": 8, "unfreeze_top_k": top_k}
    root = str(Path(__file__).resolve().parents[3])
    script = KILL_SCRIPT.format(root=root, ws=str(workspace), enc=str(tiny_encoder), rung=rung, finetune=finetune)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    cfg = config(workspace, tiny_encoder, rungs=["frozen", rung], finetune=finetune)
    curated = make_task(workspace, "strong")
    _, frozen = frozen_rung(workspace, cfg, curated)
    resumed = fit_adapted_rung(holdout_fit(rung, workspace / "run"), curated, LABELS, cfg)
    assert resumed.details.resumed_from_epoch == 1  # epochs count from 1
    assert [h.epoch for h in resumed.details.history] == [1, 2, 3]
    assert resumed.details.settings["replayed_blocks"] == replayed

    # the same training without the kill, in a fresh workspace, ends with the same weights
    other = tmp_path / "uninterrupted"
    other.mkdir()
    cfg2 = config(other, tiny_encoder, rungs=["frozen", rung], finetune=finetune)
    curated2 = make_task(other, "strong")
    _, frozen2 = frozen_rung(other, cfg2, curated2)
    straight = fit_adapted_rung(holdout_fit(rung, other / "run"), curated2, LABELS, cfg2)
    assert straight.details.resumed_from_epoch is None
    # the resumed fit ran the two epochs of three left after the kill, and its compute says so
    assert 0 < resumed.details.training_gflop < straight.details.training_gflop
    assert resumed.details.training_gflop == pytest.approx(straight.details.training_gflop * 2 / 3, rel=0.01)
    assert 0 < straight.details.step_seconds <= straight.details.train_seconds
    a, b = (
        load_file(str(resumed.model_dir / "head.safetensors")),
        load_file(str(straight.model_dir / "head.safetensors")),
    )
    assert np.array_equal(a["weight"], b["weight"])


def test_the_frozen_blocks_run_once_per_split_for_the_fit_its_refit_and_its_folds(workspace, tiny_encoder, monkeypatch):
    from tasks.ladder.cross_validation import POOL
    from tasks.ladder.finetuning import AdaptedFit, fit_adapted_rung, holdout_fit
    from tasks.ladder.frozen_rung import linear_probe_path
    from thaw.datasets import SplitRows
    from thaw.frozen_prefix import FrozenPrefix

    computed = []
    compute = FrozenPrefix.compute.__func__
    monkeypatch.setattr(
        FrozenPrefix,
        "compute",
        classmethod(lambda cls, *a, **k: computed.append(len(a[2]["input_ids"])) or compute(cls, *a, **k)),
    )

    curated = make_task(workspace, "strong")
    finetune = {"epochs": 2, "batch_size": 8, "unfreeze_top_k": 1}  # the lower of two blocks is replayed
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "partial"], finetune=finetune)
    frozen_rung(workspace, cfg, curated)
    cache = cfg.state_path / "cache" / "prefix"

    def entries() -> dict[str, tuple]:
        """Each entry's directory and its files' write times: an entry written again is a
        new directory renamed into place (a hit renews only its marker's time, a use)."""

        def written(e):
            files = sorted((f.name, f.stat().st_mtime_ns) for f in e.iterdir() if f.name != "complete.json")
            return e.stat().st_ino, files

        return {e.name: written(e) for e in cache.iterdir() if not e.name.startswith(".")}

    held = fit_adapted_rung(holdout_fit("partial", workspace / "run"), curated, LABELS, cfg)
    assert held.details.settings["replayed_blocks"] == 1
    written = entries()
    assert len(written) == 2  # the train split's states and the validation split's
    assert computed == [60, 30]  # each split's rows once

    probe = linear_probe_path(workspace / "run")
    refit = AdaptedFit("partial", POOL, None, probe, "refit", workspace / "final", epochs=2, select_epoch=False)
    fold = AdaptedFit(
        "partial", SplitRows(POOL.splits, tuple(range(0, 90, 2))), SplitRows(POOL.splits, tuple(range(1, 90, 2))),
        probe, "cv-r0-f0", None, select_epoch=False,
    )  # fmt: skip
    for fit in (refit, fold):
        trained = fit_adapted_rung(fit, curated, LABELS, cfg)
        assert trained.details.settings["replayed_blocks"] == 1
        assert entries() == written and computed == [60, 30]  # read back, neither computed nor written again
    assert len(trained.validation_predictions) == 45

    # a damaged entry is computed again and replaced, not read and not left in place
    train_entry = next(cache.glob(f"{sorted(written)[0]}"))
    (train_entry / "states.safetensors").write_bytes(b"not states")
    refit = dataclasses.replace(refit, out_dir=workspace / "final-again")
    fit_adapted_rung(refit, curated, LABELS, cfg)
    assert computed[2:] in ([60], [30]) and entries().keys() == written.keys()
    fit_adapted_rung(dataclasses.replace(refit, out_dir=workspace / "final-third"), curated, LABELS, cfg)
    assert len(computed) == 3  # the replacement is read back


def test_the_few_shot_rung_ends_end_to_end_and_its_refit_repeats_only_the_chosen_cross_entropy_epochs(
    workspace, tiny_encoder
):
    from tasks.ladder.cross_validation import POOL
    from tasks.ladder.finetuning import AdaptedFit, fit_adapted_rung, holdout_fit
    from tasks.ladder.frozen_rung import linear_probe_path

    curated = make_task(workspace, "strong")
    fewshot = {"steps": 25, "classes_per_batch": 3, "rows_per_class": 2, "end_to_end_epochs": 3}
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "fewshot"], fewshot=fewshot, finetune={"patience": 5})
    frozen_rung(workspace, cfg, curated)
    checkpoints = cfg.state_path / "checkpoints"

    def contrastive_passes() -> int:  # the newest epoch kept by the contrastive loop's checkpoint
        (done,) = [d for d in checkpoints.glob("*-train_embeddings") if d.name not in seen]
        seen.add(done.name)
        return int(sorted(done.glob("epoch-*"))[-1].name.split("-")[1]) + 1

    seen: set[str] = set()
    held = fit_adapted_rung(holdout_fit("fewshot", workspace / "run"), curated, LABELS, cfg)
    settings = held.details.settings
    assert held.details.method.startswith("contrastive pairs + logistic regression, then end to end")
    assert settings["label_name_rows"] == 3 and settings["end_to_end_epochs"] == 3
    assert settings["end_to_end_learning_rate"] == 1e-4 and settings["epochs"] == 3
    # the rung's epochs are the cross-entropy loop's, chosen on validation
    assert [h.epoch for h in held.details.history] == [1, 2, 3] and 1 <= held.details.best_epoch <= 3
    assert all(h.validation_metric is not None for h in held.details.history)
    assert contrastive_passes() == 3  # 63 rows in batches of 6: 10 steps a pass, 25 steps

    probe = linear_probe_path(workspace / "run")
    refit = AdaptedFit("fewshot", POOL, None, probe, "refit", workspace / "final", epochs=1, select_epoch=False)
    again = fit_adapted_rung(refit, curated, LABELS, cfg)
    # one cross-entropy epoch as told; the contrastive passes still sized in steps (93 rows: 15 a pass)
    assert again.details.epochs_run == 1 and again.details.settings["epochs"] == 1
    assert again.details.settings["end_to_end_epochs"] == 1  # the count it ran, not the configured 3
    assert contrastive_passes() == 2

    off = config(workspace, tiny_encoder, rungs=["frozen", "fewshot"], fewshot=fewshot | {"end_to_end_epochs": 0})
    plain = fit_adapted_rung(holdout_fit("fewshot", workspace / "run"), curated, LABELS, off)
    assert "end to end" not in plain.details.method
    assert plain.details.settings["end_to_end_epochs"] == 0 and "end_to_end_learning_rate" not in plain.details.settings
    assert all(h.validation_metric is None for h in plain.details.history)  # the contrastive loop's passes
    assert len(plain.details.history) == contrastive_passes() == 3


def test_the_few_shot_end_to_end_step_can_train_the_top_blocks_alone_and_keeps_what_was_tuned_below(
    workspace, tiny_encoder
):
    from safetensors.numpy import load_file

    from tasks.ladder.finetuning import fit_adapted_rung, holdout_fit

    curated = make_task(workspace, "strong")
    fewshot = {"steps": 20, "classes_per_batch": 3, "rows_per_class": 2, "end_to_end_epochs": 2}

    def fit(name: str, **settings) -> dict:
        cfg = config(workspace, tiny_encoder, rungs=["frozen", "fewshot"], fewshot=fewshot | settings)
        fitted = fit_adapted_rung(
            dataclasses.replace(holdout_fit("fewshot", workspace / "run"), out_dir=workspace / name),
            curated,
            LABELS,
            cfg,
        )
        return fitted.details.settings, load_file(str(workspace / name / "delta.safetensors"))

    frozen_rung(workspace, config(workspace, tiny_encoder), curated)
    (whole, moved), (top, tuned) = fit("whole"), fit("top", end_to_end_blocks=1)
    assert (whole["end_to_end_blocks"], whole["replayed_blocks"]) == (2, 0)
    assert (top["end_to_end_blocks"], top["replayed_blocks"]) == (1, 1)  # the lower block ran once per row
    # from this fit's tuned block, never the pretrained states of the prefix cache (nor into it)
    assert not (config(workspace, tiny_encoder).state_path / "cache" / "prefix").exists()
    _, before = fit("contrastive", end_to_end_epochs=0)
    # the saved model still holds every tensor the contrastive phase tuned, the lower block's too,
    # as that phase left them; only the top block moved after it
    assert tuned.keys() == before.keys() == moved.keys()
    below = [k for k in before if ".layer.1." not in k]
    assert any(".layer.0." in k for k in below) and all(np.array_equal(tuned[k], before[k]) for k in below)
    assert any(not np.array_equal(tuned[k], before[k]) for k in before if ".layer.1." in k)
    assert any(not np.array_equal(moved[k], before[k]) for k in below)  # with the whole surface open, they move


def test_a_rung_whose_share_of_the_time_budget_is_spent_runs_one_annealed_epoch_and_says_so(workspace, tiny_encoder):
    from tasks.ladder.rung_training import train_ladder_rung
    from tasks.ladder.transfer_note import _rung_row
    from tasks.release.lineage import run_params

    cfg = config(workspace, tiny_encoder, rungs=["frozen", "full"], finetune={"epochs": 3, "batch_size": 8})
    curated = make_task(workspace, "strong")
    frozen_rung(workspace, cfg, curated)
    ctx = LadderContext(curated, LABELS, cfg, workspace / "run", EvaluationPlan.holdout())
    rung = train_ladder_rung.fn("full", ctx, 0.0)
    assert (rung.details.epochs_run, rung.details.epochs_within_budget) == (1, 1)
    assert rung.details.settings["epochs"] == 3  # the configured count stays on record beside it
    assert _rung_row(rung, "accuracy")["epochs"] == {"run": 1, "configured": 3, "within_budget": 1}
    assert run_params(cfg, rung)["rung.epochs_within_budget"] == 1  # on the MLflow run an auditor opens
    shutil.rmtree(cfg.state_path / "checkpoints")  # else the same fit resumes, keeping its one-epoch plan
    with_time = train_ladder_rung.fn("full", ctx, 3600)
    assert (with_time.details.epochs_run, with_time.details.epochs_within_budget) == (3, None)

    # the refit trains the configuration as scored or not at all: with no time left the
    # hold-out model is registered, and the note says why
    from tasks.ladder.rung_training import refit_selected_rung
    from thaw.rungs import Selection

    selection = Selection("full", "best", {}, None, False)
    kept = refit_selected_rung.fn(selection, [with_time], ctx, seconds_left=0.0, weight=1.5)
    assert kept.model_dir == with_time.model_dir and kept.details.trained_on == ("train",)
    epochs = with_time.details.best_epoch
    assert kept.details.refit_skipped.startswith(f"refit skipped: {epochs} epoch{'s' if epochs > 1 else ''} on train")
    refit = refit_selected_rung.fn(selection, [with_time], ctx, seconds_left=3600, weight=1.5)
    assert refit.details.trained_on == ("train", "validation") and refit.details.refit_skipped is None


def test_frozen_feature_cache_hits_on_rerun_and_misses_on_changed_data(workspace, tiny_encoder):
    from tasks.ladder.features import extract_frozen_features

    cfg = config(workspace, tiny_encoder)
    curated = make_task(workspace, "strong")
    first = extract_frozen_features.fn(curated, cfg)
    second = extract_frozen_features.fn(curated, cfg)
    assert not any(first.cache_hits.values()) and all(second.cache_hits.values())
    assert second.paths == first.paths
    changed = make_task(workspace, "strong", seed=1)  # new train/validation/test bytes
    third = extract_frozen_features.fn(changed, cfg)
    assert not any(third.cache_hits.values())


@pytest.mark.parametrize("kind,target,escalates", [("strong", 0.9, False), ("weak", 0.9, True)])
def test_gate_escalates_only_when_the_frozen_rung_is_weak(
    workspace, tiny_encoder, prefect_harness, kind, target, escalates
):
    from flows.adaptation_ladder import climb_ladder
    from tasks.ladder.features import extract_frozen_features

    curated = make_task(workspace, kind, n=90)
    cfg = config(workspace, tiny_encoder, target=target)
    features = extract_frozen_features.fn(curated, cfg)
    (workspace / "run").mkdir(exist_ok=True)
    result = climb_ladder(features, curated, LABELS, cfg, workspace / "run")
    frozen_acc = result.trained[0].validation["accuracy"]
    assert (frozen_acc >= target) == (kind == "strong")
    assert ([r.rung for r in result.trained] == ["frozen", "peft"]) == escalates
    assert result.decisions[0].action == ("escalate" if escalates else "stop")
    note = json.loads((workspace / "run" / "transfer_note.json").read_text())
    assert note["selected_rung"] == result.selection.rung and note["decisions"]
    assert (workspace / "run" / "ladder_chart.png").stat().st_size > 1000


def test_each_rung_s_serving_cost_is_measured_and_a_latency_budget_leaves_rungs_out(
    workspace, tiny_encoder, prefect_harness
):
    """Each rung is loaded as `thaw serve` loads it and timed on the held-out texts; a rung
    over `serving.latency_budget_ms` is not selected, and the reason says why."""
    from flows.adaptation_ladder import climb_ladder
    from tasks.ladder.escalation import select_final_rung
    from tasks.ladder.features import extract_frozen_features

    curated = make_task(workspace, "weak", n=90)
    serving = {"latency_budget_ms": 1e-6, "latency_rows": 12, "latency_batch": 4}  # no model meets a nanosecond
    cfg = ThawConfig.model_validate({**config(workspace, tiny_encoder, target=0.9).model_dump(), "serving": serving})
    features = extract_frozen_features.fn(curated, cfg)
    (workspace / "run").mkdir(exist_ok=True)
    result = climb_ladder(features, curated, LABELS, cfg, workspace / "run")
    assert [r.rung for r in result.trained] == ["frozen", "peft"]
    assert set(result.latency) == {"frozen", "peft", "registered"}
    peft = result.trained[1]  # cross-validated here: no single model before the refit, frozen's graph stands in
    assert result.latency["peft"]["measured_on"] == ("frozen" if peft.model_dir is None else "")
    assert not result.latency["frozen"]["measured_on"] and not result.latency["registered"]["measured_on"]
    for profile in result.latency.values():
        assert profile["rows"] == 12 and profile["batch"] == 4
        assert 0 < profile["p50_ms"] <= profile["p95_ms"] <= profile["p99_ms"] and profile["rows_per_s"] > 0
        assert profile["model_mb"] > 0 and profile["backbone_mb"] > 0
    assert "no rung meets the latency budget" in result.selection.reason
    assert set(result.selection.over_budget) == {"frozen", "peft"}
    note = (workspace / "run" / "transfer_note.md").read_text(encoding="utf-8")
    assert (
        "## Serving cost" in note
        and "**over budget**" in note
        and "Latency budget (p95 at batch 1): **1e-06 ms**" in note
    )

    ctx = LadderContext(curated, LABELS, cfg, workspace / "run", result.evaluation)
    only_peft = {"peft": "p95 at batch 1 is 9.0 ms, over the 5 ms budget (serving.latency_budget_ms)"}
    selection = select_final_rung.fn(list(result.trained), result.scratch, ctx, only_peft)
    assert selection.rung == "frozen" and "left out for latency: peft: p95 at batch 1 is 9.0 ms" in selection.reason
