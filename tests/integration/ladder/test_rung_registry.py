"""A rung added the way a user would add one: a registration in their own module, no edit
to thaw. It is accepted by the config, planned by the decision table, trained through its
own phases, named in the transfer note, refit and served."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.integration.ladder.test_small_data import LABELS, climb, config, make_splits
from thaw.rung_methods.phases import FitState, fine_tune
from thaw.rung_registry import REGIMES, Phase, RungMethod, register_rung, rung_names, unregister_rung
from thaw.rungs import LadderContext

pytestmark = pytest.mark.integration

PHASES_RUN: list[tuple[str, int]] = []


def open_top_block_biases(model, ladder) -> tuple[str, str]:
    from thaw.modeling import transformer_blocks

    for name, p in transformer_blocks(model.encoder)[-1].named_parameters():
        p.requires_grad_(name.endswith(".bias"))
    return "top-block biases", "every weight but the top block's biases"


def count_rows(state: FitState) -> None:
    PHASES_RUN.append(("count_rows", len(state.train.texts)))


TOY = RungMethod(
    name="toy",
    order=15,
    label="toy top-block biases",
    planned_in=frozenset(REGIMES),
    open_surface=open_top_block_biases,
    learning_rate=lambda ladder: (1e-2, 1.0),
    loop=lambda ladder: ladder.finetune,
    phases=(Phase("count_rows", count_rows), Phase("fine_tune", fine_tune)),
    describe=lambda method, ladder: f"toy: {method}",
)


@pytest.fixture
def toy_rung():
    register_rung(TOY)
    PHASES_RUN.clear()
    try:
        yield TOY
    finally:
        unregister_rung(TOY.name)


def test_a_rung_registered_outside_thaw_is_planned_trained_reported_and_served(
    workspace, tiny_encoder, prefect_harness, toy_rung
):
    from tasks.ladder.rung_training import refit_selected_rung
    from thaw.serving import ThawPredictor

    assert rung_names()[:4] == ("frozen", "fewshot", "toy", "peft")  # its place on the ladder
    curated = make_splits(workspace, {"train": 2, "validation": 1, "test": 1})
    cfg = config(workspace, tiny_encoder, rungs=["frozen", "toy"])
    result = climb(workspace, cfg, curated)
    note = json.loads((workspace / "run" / "transfer_note.json").read_text())
    assert note["decision_table"]["rungs"] == ["toy"]
    rows = {r["rung"]: r for r in note["validation"]}
    assert rows["toy"]["label"] == "toy top-block biases" and rows["toy"]["method"] == "toy: top-block biases"
    assert rows["toy"]["folds"] == 3 and rows["toy"]["trainable_parameters"] > 0
    assert "toy (toy top-block biases)" in (workspace / "run" / "transfer_note.md").read_text()
    # both phases ran, in order, once per fold (each fold trains on 2/3 of the 12 pooled rows)
    assert PHASES_RUN == [("count_rows", 8)] * 3
    toy = next(r for r in result.trained if r.rung == "toy")
    assert 0 < toy.details.trainable_fraction_of_backbone < 0.05
    assert toy.details.settings["replayed_blocks"] == 1  # the frozen lower block ran once per row, not per step
    picked = dataclasses.replace(result.selection, rung="toy")
    refit = refit_selected_rung.fn(
        picked, result.trained, LadderContext(curated, LABELS, cfg, workspace / "run", result.evaluation)
    )
    assert refit.details.trained_on == ("train", "validation")
    probs = ThawPredictor(refit.model_dir).probabilities(["refund please", "password help"])
    assert probs.shape == (2, len(LABELS)) and np.allclose(probs.sum(1), 1)


def test_the_config_refuses_a_rung_nobody_registered():
    from pydantic import ValidationError

    from thaw.config import LadderConfig

    with pytest.raises(ValidationError, match="unknown rung 'toy'; registered: frozen, fewshot, peft"):
        LadderConfig(rungs=["frozen", "toy"])


def test_a_second_rung_cannot_take_a_registered_place(toy_rung):
    with pytest.raises(ValueError, match="place 15 is taken by 'toy'"):
        register_rung(dataclasses.replace(TOY, name="other"))
