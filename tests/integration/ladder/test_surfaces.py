"""What each rung trains, asserted the way PEFT's own suite does: after a step only the
rung's parameters changed, the frozen ones are bit-identical, and switching the
adaptation off (or loading the base without it) gives back the base model's outputs."""

from __future__ import annotations

import copy

import pytest

from thaw.config import LadderConfig
from thaw.rung_registry import rung_methods

pytestmark = pytest.mark.integration

TEXTS = ["refund my money", "password reset please", "where is my delivery"]


def _ladder(method: str = "lora") -> LadderConfig:
    return LadderConfig(peft={"method": method}, finetune={"unfreeze_top_k": 1})


def _adapted(tiny_encoder, rung: str, method: str = "lora"):
    """(tokenizer, untouched base encoder, classifier after one optimizer step, surface)."""
    import torch

    from thaw.adaptation import apply_surface, build_classifier, parameter_groups
    from thaw.modeling import load_encoder
    from thaw.rung_registry import rung_method

    torch.manual_seed(0)
    tokenizer, encoder = load_encoder(tiny_encoder, torch.device("cpu"))
    base = copy.deepcopy(encoder)
    model = build_classifier(encoder, 3, "mean")
    surface = apply_surface(model, rung_method(rung), _ladder(method))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(parameter_groups(model, 5e-2, 5e-2, 1.0, 0.0), weight_decay=0.0)
    model.train()
    torch.nn.functional.cross_entropy(model(**batch), torch.tensor([0, 1, 2])).backward()
    optimizer.step()
    model.eval()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    return tokenizer, base, model, surface, changed, before


def _hidden(encoder, tokenizer):
    import torch

    with torch.no_grad():
        return encoder(**tokenizer(TEXTS, padding=True, return_tensors="pt")).last_hidden_state


ADAPTED = [m.name for m in rung_methods() if m.adapted]


@pytest.mark.parametrize("rung", ADAPTED)
def test_every_registered_rung_changes_exactly_what_it_opens(tiny_encoder, rung):
    """For any registered rung (a new one included): after a step the parameters that
    changed are trainable ones, the frozen ones are bit-identical, the head trains, and the
    surface counts what it opened."""
    import torch

    _, _, model, surface, changed, before = _adapted(tiny_encoder, rung)
    opened = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= opened and {"head.weight", "head.bias"} <= changed
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n not in opened)
    counted = sum(p.numel() for n, p in model.named_parameters() if n in opened and n.startswith("encoder."))
    assert surface.rung == rung and surface.trainable_backbone == counted > 0


@pytest.mark.parametrize(
    "rung,method,trains",
    [
        ("peft", "lora", lambda n: "lora_" in n),
        ("peft", "ia3", lambda n: "ia3_" in n),
        ("peft", "bitfit", lambda n: n.endswith(".bias")),
        ("partial", "lora", lambda n: ".layer.1." in n),  # the top block of two
        ("full", "lora", lambda n: True),
    ],
    ids=["lora", "ia3", "bitfit", "partial", "full"],
)
def test_a_step_changes_only_what_the_rung_trains(tiny_encoder, rung, method, trains):
    import torch

    _, _, model, surface, changed, before = _adapted(tiny_encoder, rung, method)
    encoder_changed = {n for n in changed if n.startswith("encoder.")}
    assert encoder_changed and all(trains(n) for n in encoder_changed)
    assert {"head.weight", "head.bias"} <= changed
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(torch.equal(model.get_parameter(n), before[n]) for n in frozen)
    if rung == "full":
        assert not frozen and surface.fraction == 1.0
    else:
        assert frozen and 0 < surface.fraction < 1


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_disabling_the_adapter_restores_the_base_outputs(tiny_encoder, method):
    import torch

    tokenizer, base, model, _, _, _ = _adapted(tiny_encoder, "peft", method)
    adapted = _hidden(model.encoder, tokenizer)
    with model.encoder.disable_adapter():
        disabled = _hidden(model.encoder, tokenizer)
    assert not torch.allclose(adapted, disabled)
    assert torch.allclose(disabled, _hidden(base, tokenizer), atol=1e-6)


@pytest.mark.parametrize("rung,method", [("peft", "bitfit"), ("partial", "lora"), ("full", "lora")])
def test_the_saved_delta_is_the_whole_change_to_the_base(tiny_encoder, tmp_path, rung, method):
    """BitFit, partial and full save the tensors they changed: the base plus that delta is
    the trained encoder, the base without it is the base."""
    import torch

    from tasks.ladder.finetuning import save_adapted_model
    from thaw.modeling import load_encoder
    from thaw.serving import apply_adaptation

    tokenizer, base, model, surface, _, _ = _adapted(tiny_encoder, rung, method)
    save_adapted_model(model, surface, ("a", "b", "c"), {"rung": rung}, tmp_path / "model")
    _, fresh = load_encoder(tiny_encoder, torch.device("cpu"))
    assert torch.allclose(_hidden(fresh, tokenizer), _hidden(base, tokenizer))
    restored = apply_adaptation(fresh, tmp_path / "model", torch.device("cpu"))
    assert torch.allclose(_hidden(restored, tokenizer), _hidden(model.encoder, tokenizer), atol=1e-6)
    assert not torch.allclose(_hidden(restored, tokenizer), _hidden(base, tokenizer))


def test_a_delta_that_does_not_fit_the_backbone_is_refused_in_a_line(tiny_encoder, tmp_path):
    """A stored model's delta is whoever registered it's: a tensor the backbone lacks, or
    one of another shape, is a one-line refusal (a ValueError and a RuntimeError before)."""
    import torch
    from safetensors.torch import save_file

    from thaw.errors import UserError
    from thaw.modeling import load_encoder
    from thaw.serving import apply_adaptation

    _, fresh = load_encoder(tiny_encoder, torch.device("cpu"))
    name, weight = next(iter(fresh.state_dict().items()))
    (tmp_path / "model").mkdir()
    for tensors, said in (
        ({"not.a.weight": torch.zeros(2)}, "do not exist in the backbone"),
        ({name: torch.zeros(weight.shape[0] + 1, *weight.shape[1:])}, "do not have the backbone's shape"),
    ):
        save_file(tensors, str(tmp_path / "model" / "delta.safetensors"))
        with pytest.raises(UserError, match=f"^model/delta.safetensors: tensors .* {said}"):
            apply_adaptation(fresh, tmp_path / "model", torch.device("cpu"))
    assert torch.equal(fresh.state_dict()[name], weight)  # nothing changed


def test_an_adapter_config_thaw_did_not_write_is_refused_in_a_line(tiny_encoder, tmp_path):
    """adapter_config.json is whoever registered the version's: PEFT met these with a
    KeyError, a TypeError and its own ValueError."""
    import json

    import torch

    from tasks.ladder.finetuning import save_adapted_model
    from thaw.errors import UserError
    from thaw.modeling import load_encoder
    from thaw.serving import apply_adaptation

    _, _, model, surface, _, _ = _adapted(tiny_encoder, "peft", "lora")
    save_adapted_model(model, surface, ("a", "b", "c"), {"rung": "peft"}, tmp_path / "model")
    path = tmp_path / "model" / "adapter" / "adapter_config.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    for written, said in (
        ({**saved, "peft_type": "NOPE"}, "not an adapter thaw trains"),
        (["LORA"], "not an adapter thaw trains"),
        ({**saved, "target_modules": ["nothere"]}, "not an adapter for this backbone"),
        ({**saved, "r": "8"}, r"not an adapter for this backbone \(TypeError"),
    ):
        path.write_text(json.dumps(written), encoding="utf-8")
        _, fresh = load_encoder(tiny_encoder, torch.device("cpu"))
        with pytest.raises(UserError, match=f"^model/adapter/adapter_config.json: {said}"):
            apply_adaptation(fresh, tmp_path / "model", torch.device("cpu"))


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_a_saved_adapter_is_merged_at_load_and_serves_the_same_outputs(tiny_encoder, tmp_path, method):
    """Served, an adapter costs nothing extra: it is merged into the base weights at load,
    and the merged encoder gives the adapted encoder's outputs."""
    import torch

    from tasks.ladder.finetuning import save_adapted_model
    from thaw.modeling import load_encoder
    from thaw.serving import apply_adaptation

    tokenizer, _, model, surface, _, _ = _adapted(tiny_encoder, "peft", method)
    save_adapted_model(model, surface, ("a", "b", "c"), {"rung": "peft"}, tmp_path / "model")
    _, fresh = load_encoder(tiny_encoder, torch.device("cpu"))
    restored = apply_adaptation(fresh, tmp_path / "model", torch.device("cpu"))
    assert type(restored) is type(fresh) and not any(
        "lora_" in n or "ia3_" in n for n, _ in restored.named_parameters()
    )
    assert torch.allclose(_hidden(restored, tokenizer), _hidden(model.encoder, tokenizer), atol=1e-5)
