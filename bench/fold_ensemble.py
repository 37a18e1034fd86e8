"""Would the cross-validation folds' models, averaged with the refit, serve better than
the refit alone? A measurement on a kept ``bench.ladder`` workspace, for a design thaw
does not have (the registered model is the one refit on train + validation; the folds'
models are used for the gate and then left in the checkpoint cache).

``python -m bench.fold_ensemble WORKSPACE`` reads the newest run of the workspace
``python -m bench.ladder SET:10shot`` printed (its curated test split and registered
model), finds every finished fit of the rung's last
phase (``fine_tune``, the checkpoints ``.thaw/checkpoints/<key>-fine_tune``) whose head
has the run's classes, and scores each on the curated test split as serving would
(``thaw.serving.ThawPredictor``: PII to entity types, the PyTorch encoder), then the mean
of their class probabilities (and of their log-probabilities): the folds alone, the
folds with the refit, and the folds with the refit counted twice (the refit trained on a
quarter more rows). The refit is the fit whose head is the registered model's. Give it
the workspace of one set's run: it tells fits apart by their classes alone.

An ensemble of k members costs k encoder passes per request, so it must win by more
than noise to be worth serving. Nothing here is tuned: the members and their weights
are fixed before the run.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

LAST_PHASE = "fine_tune"


def newest_run(state: Path) -> Path:
    runs = [p for p in (state / "runs").iterdir() if (p / "models" / "final").is_dir()]
    if not runs:
        raise SystemExit(f"{state}: no run with a registered model (models/final)")
    return max(runs, key=lambda p: p.stat().st_mtime)


def finished_fits(state: Path, classes: int) -> dict[str, dict]:
    """Each finished last-phase fit's best weights, by checkpoint name."""
    from safetensors.torch import load_file

    from thaw.trainer import FINISHED

    fits = {}
    for directory in sorted((state / "checkpoints").glob(f"*-{LAST_PHASE}")):
        epochs = sorted(directory.glob("epoch-*"))
        if epochs and (epochs[-1] / FINISHED).is_file():
            best = load_file(str(epochs[-1] / "best.safetensors"))
            if "head.weight" in best and best["head.weight"].shape[0] == classes:
                fits[directory.name] = best
    return fits


def as_model_dir(final: Path, best: dict, out: Path) -> Path:
    """The registered model's directory with ``best``'s encoder tensors and head."""
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file

    shutil.copytree(final, out, ignore=shutil.ignore_patterns("onnx"))
    prefix = "encoder."
    save_file(
        {k[len(prefix) :]: v.contiguous() for k, v in best.items() if k.startswith(prefix)},
        str(out / "delta.safetensors"),
    )
    head = {"weight": best["head.weight"].float().numpy(), "bias": best["head.bias"].float().numpy()}
    save_numpy(head, str(out / "head.safetensors"))
    return out


def accuracy(probabilities: np.ndarray, labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(labels[probabilities.argmax(1)] == truth))


def main(workspace: Path) -> None:
    import pandas as pd
    from safetensors.numpy import load_file

    from thaw.serving import ThawPredictor

    state = workspace / "thaw" / ".thaw"
    run = newest_run(state)
    final, test_file = run / "models" / "final", run / "curated" / "test.csv"
    labels = np.asarray(json.loads((final / "labels.json").read_text(encoding="utf-8")))
    test = pd.read_csv(test_file, keep_default_na=False, dtype=str)
    texts, truth = test["text"].tolist(), test["label"].to_numpy()
    registered_head = load_file(str(final / "head.safetensors"))["weight"]
    refit = ThawPredictor(final, use_onnx=False).probabilities(texts)
    folds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, best in finished_fits(state, len(labels)).items():
            if np.allclose(best["head.weight"].float().numpy(), registered_head):
                continue  # the refit's own checkpoint
            model = as_model_dir(final, best, Path(scratch) / name)
            folds[name] = ThawPredictor(model, use_onnx=False).probabilities(texts)
    print(f"{test_file.relative_to(state)}: {len(texts)} test rows, {len(labels)} classes, {len(folds)} fold models")
    print(f"  {'the registered refit':44s} {accuracy(refit, labels, truth):.4f}")
    for name, probabilities in folds.items():
        print(f"  fold {name[:12]:39s} {accuracy(probabilities, labels, truth):.4f}")
    members = list(folds.values())
    for title, chosen in (
        ("folds", members),
        ("folds + refit", [*members, refit]),
        ("folds + refit counted twice", [*members, refit, refit]),
    ):
        mean = np.mean(chosen, axis=0)
        log_mean = np.mean([np.log(np.maximum(p, 1e-12)) for p in chosen], axis=0)
        print(
            f"  mean of {title:36s} {accuracy(mean, labels, truth):.4f} "
            f"(of log-probabilities {accuracy(log_mean, labels, truth):.4f})"
        )


if __name__ == "__main__":
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.fold_ensemble WORKSPACE (as bench.ladder printed it)")
    main(Path(sys.argv[1]))
