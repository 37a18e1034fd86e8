"""Frozen lower blocks run once per row and replayed in every step: the blocks above them,
the head, the loss and the gradients are what the whole model gives in eval mode, for
batches of mixed lengths."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

TEXTS = [
    "refund",
    "my card was stolen please block it",
    "where is my order",
    "cancel the subscription and change my address",
    "password reset",
    "new card",
]


@pytest.fixture(autouse=True)
def exact_arithmetic(monkeypatch):
    """Replay is compared with the library's own fp32 forward, so every test here pins fp32:
    on a CPU with native bf16 (or CUDA) thaw would otherwise autocast the prefix it computes.
    The bf16 path is checked on its own, within bf16's rounding, below."""
    monkeypatch.setenv("THAW_PRECISION", "fp32")


def _model(tiny_encoder, layers: int = 3):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from thaw.adaptation import build_classifier

    tokenizer = BertTokenizerFast.from_pretrained(tiny_encoder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64
    )
    model = build_classifier(BertModel(config), 3, "mean")
    return tokenizer, model


def _open_top(model, k: int) -> None:
    from thaw.modeling import transformer_blocks

    for p in model.encoder.parameters():
        p.requires_grad_(False)
    for block in transformer_blocks(model.encoder)[-k:]:
        for p in block.parameters():
            p.requires_grad_(True)


def test_the_frozen_prefix_is_the_lowest_blocks_nothing_trains_in(tiny_encoder):
    from thaw.frozen_prefix import frozen_block_count

    tokenizer, model = _model(tiny_encoder)
    encoder = model.encoder
    assert frozen_block_count(encoder, tokenizer) == 0  # everything trains (full fine-tuning)
    _open_top(model, 1)
    assert frozen_block_count(encoder, tokenizer) == 2  # partial, the top block of three
    tokenizer.padding_side = "left"
    assert frozen_block_count(encoder, tokenizer) == 0  # positions would count from the padding
    tokenizer.padding_side = "right"
    _open_top(model, 2)
    assert frozen_block_count(encoder, tokenizer) == 1
    encoder.embeddings.LayerNorm.weight.requires_grad_(True)
    assert frozen_block_count(encoder, tokenizer) == 0  # an embedding weight trains: every step runs from the start
    for p in encoder.parameters():
        p.requires_grad_(False)
    assert frozen_block_count(encoder, tokenizer) == 0  # nothing trains: not a fine-tuning at all


@pytest.mark.parametrize("frozen", [1, 2])
def test_replayed_states_give_the_whole_models_logits_and_gradients(tiny_encoder, frozen):
    from thaw.frozen_prefix import FrozenPrefix, replaying
    from thaw.modeling import encode_texts
    from thaw.trainer import collate, predict_classes

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 3 - frozen)
    device = torch.device("cpu")
    encoded = encode_texts(tokenizer, TEXTS, 64)
    prefix = FrozenPrefix.compute(model, tokenizer, encoded, device, batch_size=4, count=frozen)
    assert prefix.flat.shape == (sum(len(ids) for ids in encoded["input_ids"]), 32)
    model.eval()  # dropout off on both sides, so the two computations are the same maths
    idx = [4, 1, 0, 3]  # lengths 4, 9, 3, 11: padding inside the batch
    features = collate(tokenizer, encoded, idx, device)
    y = torch.tensor([0, 1, 2, 1])
    results = []
    # the library's padded forward of every block (the reference), then the replay through
    # it and through thaw.packed's forward of the real tokens
    for packs, p in ((False, None), (False, prefix), (True, prefix)):
        model.zero_grad()
        model.packs = packs
        with replaying(p, idx, features):
            logits = model(**features)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads = {n: q.grad.clone() for n, q in model.named_parameters() if q.requires_grad}
        results.append((logits.detach(), grads))
    (whole, whole_grads), *replays = results
    assert whole_grads
    for replayed, replayed_grads in replays:
        torch.testing.assert_close(replayed, whole, rtol=1e-5, atol=1e-6)
        assert whole_grads.keys() == replayed_grads.keys()
        for name in whole_grads:
            torch.testing.assert_close(replayed_grads[name], whole_grads[name], rtol=1e-4, atol=1e-6)
    full = predict_classes(model, tokenizer, encoded, 4, device)
    assert (predict_classes(model, tokenizer, encoded, 4, device, prefix) == full).all()


def test_the_real_blocks_are_back_after_a_replay_even_one_that_failed(tiny_encoder):
    from thaw.frozen_prefix import FrozenPrefix
    from thaw.modeling import encode_texts, transformer_blocks
    from thaw.trainer import collate

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 1)
    blocks = transformer_blocks(model.encoder)
    encoded = encode_texts(tokenizer, TEXTS, 64)
    prefix = FrozenPrefix.compute(model, tokenizer, encoded, torch.device("cpu"), batch_size=8, count=2)
    features = collate(tokenizer, encoded, [0, 1], torch.device("cpu"))
    with pytest.raises(RuntimeError, match="mid-step"), prefix.replay([0, 1], features):
        assert transformer_blocks(model.encoder)[:2] != blocks[:2]
        raise RuntimeError("mid-step")
    assert transformer_blocks(model.encoder) == blocks


@pytest.mark.parametrize("budget_mb", [0.0, 0.001, 1.0])
def test_a_fit_replays_the_frozen_blocks_only_within_its_memory_budget(tiny_encoder, tmp_path, capsys, budget_mb):
    from thaw.config import ThawConfig
    from thaw.datasets import Split
    from thaw.modeling import encode_texts
    from thaw.rung_methods.phases import FitState, _frozen_prefixes

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 1)
    finetune = {"frozen_prefix_mb": budget_mb}
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path), "training": {"ladder": {"finetune": finetune}}})
    split = Split([str(i) for i in range(len(TEXTS))], TEXTS, ["a", "b", "c"] * 2)
    encoded = encode_texts(tokenizer, TEXTS, 64)
    state = FitState(
        model, tokenizer, torch.device("cpu"), cfg, ("a", "b", "c"), split, split, encoded, encoded,
        1e-3, 1.0, cfg.training.ladder.finetune, tmp_path / "ck", select_epoch=True,
    )  # fmt: skip
    train, validation = _frozen_prefixes(state)
    said = capsys.readouterr().out
    if budget_mb == 1.0:  # 6 short rows of 32 floats a token: a few KB
        assert train is not None and validation is not None and train.count == 2
        assert state.settings["replayed_blocks"] == state.replayed_blocks == 2
        assert not said
    else:
        assert train is None and validation is None
        assert state.settings["replayed_blocks"] == state.replayed_blocks == 0
        # a budget too small is said in the run's log; 0 switches replay off, and says nothing
        assert ("over finetune.frozen_prefix_mb" in said) == (budget_mb > 0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_computing_the_prefix_runs_the_frozen_blocks_alone_and_keeps_their_output(tiny_encoder, monkeypatch, precision):
    from thaw.frozen_prefix import FrozenPrefix
    from thaw.modeling import encode_texts, transformer_blocks
    from thaw.trainer import collate

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 2)
    calls = [0, 0, 0]
    for i, block in enumerate(transformer_blocks(model.encoder)):
        block.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    encoded = encode_texts(tokenizer, TEXTS, 64)
    monkeypatch.setenv("THAW_PRECISION", precision)  # bf16: autocast, as on a CPU with native bf16
    prefix = FrozenPrefix.compute(model, tokenizer, encoded, torch.device("cpu"), batch_size=4, count=1)
    assert calls == [2, 0, 0]  # two batches through the lowest block, none above it
    assert model.training  # the mode it had comes back
    model.eval()
    features = collate(tokenizer, encoded, list(range(len(TEXTS))), torch.device("cpu"))
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), amp:
        after_one = model.encoder(**features, output_hidden_states=True).hidden_states[1]
    with torch.no_grad():
        exact = model.encoder(**features, output_hidden_states=True).hidden_states[1]
    close = {"fp32": {}, "bf16": {"rtol": 1.6e-2, "atol": 1e-2}}[precision]  # bf16 keeps 8 bits of mantissa
    apart = []
    for i, n in enumerate(prefix.lengths()):
        states = prefix.flat[prefix.offsets[i] : prefix.offsets[i + 1]]
        torch.testing.assert_close(states.float(), after_one[i, :n].float(), **close)
        apart.append(float((states.float() - exact[i, :n]).abs().max()))
    # the tolerance above would also pass fp32 states: bf16 must have been used, fp32 not.
    # In fp32 the batches' other padding may still move the last bits (seen on AVX2 hosts:
    # 7e-9), never by the 1e-3 of bf16's 8-bit mantissa
    assert (max(apart) > 1e-5) == (precision == "bf16")


def test_saved_states_load_back_exactly_and_splits_pool_and_folds_take_rows(tiny_encoder, tmp_path):
    from thaw.frozen_prefix import FrozenPrefix
    from thaw.modeling import encode_texts

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 1)
    cpu = torch.device("cpu")
    compute = lambda texts: FrozenPrefix.compute(model, tokenizer, encode_texts(tokenizer, texts, 64), cpu, 4, 2)  # noqa: E731
    whole, first, second = compute(TEXTS), compute(TEXTS[:2]), compute(TEXTS[2:])
    pooled = FrozenPrefix.concat([first, second])  # train + validation for a refit
    assert pooled.offsets == whole.offsets
    torch.testing.assert_close(pooled.flat, whole.flat)  # a row's states do not depend on its batch
    fold = whole.take([4, 1])
    assert fold.lengths() == [whole.lengths()[4], whole.lengths()[1]]
    torch.testing.assert_close(fold.states([0, 1], 12), whole.states([4, 1], 12))

    (tmp_path / "entry").mkdir()
    whole.save(tmp_path / "entry")
    loaded = FrozenPrefix.load(tmp_path / "entry", model.encoder, cpu, 2)
    assert torch.equal(loaded.flat, whole.flat) and loaded.offsets == whole.offsets
    assert (loaded.count, loaded.returns_tuple) == (whole.count, whole.returns_tuple)
    with pytest.raises(ValueError, match="do not fit"):  # states after another number of blocks
        FrozenPrefix.load(tmp_path / "entry", model.encoder, cpu, 1)
    _, wider = _model(tiny_encoder)
    wider.encoder.config.hidden_size = 64
    with pytest.raises(ValueError, match="do not fit"):
        FrozenPrefix.load(tmp_path / "entry", wider.encoder, cpu, 2)
    (tmp_path / "entry" / "states.safetensors").write_bytes(b"\x00" * 10)  # truncated on disk
    with pytest.raises(ValueError, match="unreadable"):
        FrozenPrefix.load(tmp_path / "entry", model.encoder, cpu, 2)


def test_a_fit_takes_states_from_its_source_only_for_exactly_its_rows(tiny_encoder, tmp_path, capsys):
    from thaw.config import ThawConfig
    from thaw.datasets import Split
    from thaw.frozen_prefix import FrozenPrefix
    from thaw.modeling import encode_texts
    from thaw.rung_methods.phases import FitState, _frozen_prefixes

    tokenizer, model = _model(tiny_encoder)
    _open_top(model, 1)
    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    split = Split([str(i) for i in range(len(TEXTS))], TEXTS, ["a", "b", "c"] * 2)
    encoded = encode_texts(tokenizer, TEXTS, 64)
    source = FrozenPrefix.compute(model, tokenizer, encoded, torch.device("cpu"), 4, 2)
    asked = []

    def prefix_source(count, rows):
        asked.append((count, rows))
        return source if rows == "train" else source.take([0, 1])  # validation: not these rows

    state = FitState(
        model, tokenizer, torch.device("cpu"), cfg, ("a", "b", "c"), split, split, encoded, encoded,
        1e-3, 1.0, cfg.training.ladder.finetune, tmp_path / "ck", select_epoch=True, prefix_source=prefix_source,
    )  # fmt: skip
    train, validation = _frozen_prefixes(state)
    assert asked == [(2, "train"), (2, "validation")]
    assert train is source  # the source's own states, not computed again
    assert validation is not source and validation.lengths() == source.lengths()  # computed: the source's were wrong
    assert "validation rows' cached frozen states do not match" in capsys.readouterr().out
    assert state.prefixes == (train, validation)
