"""The encoder's forward over real tokens only (thaw.packed) gives what the library's
padded forward gives: the pooled embedding, the logits and the gradients, with and
without a LoRA wrapper; encoders whose blocks it does not know run the library's own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

TEXTS = ["refund", "my card was stolen please block it", "where is my order", "password reset"]


def _bert(tiny_encoder, **config):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(tiny_encoder)
    torch.manual_seed(0)
    settings = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64} | config
    return tokenizer, BertModel(BertConfig(vocab_size=len(tokenizer), **settings))


def _batch(tokenizer):
    from thaw.modeling import collate, encode_texts

    encoded = encode_texts(tokenizer, TEXTS, 64)
    features = collate(tokenizer, encoded, range(len(TEXTS)), torch.device("cpu"))
    from thaw.packed import worth_packing

    assert worth_packing(features["attention_mask"])  # rows of 3 to 11 tokens: 39% padding
    return features


def _logits_and_grads(model, features, packs: bool):
    model.packs = packs
    model.zero_grad()
    logits = model(**features)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1])).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_packed_forward_gives_the_padded_forwards_embedding(tiny_encoder, pooling):
    from thaw.modeling import pool
    from thaw.packed import packable, packed_embed

    tokenizer, encoder = _bert(tiny_encoder)
    encoder.eval()
    features = _batch(tokenizer)
    assert packable(encoder)
    with torch.no_grad():
        padded = pool(encoder(**features).last_hidden_state, features["attention_mask"], pooling)
        packed = packed_embed(encoder, features, pooling)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("surface", ["full", "lora", "ia3"])
def test_the_packed_forward_gives_the_same_logits_and_gradients(tiny_encoder, surface):
    from thaw.adaptation import build_classifier

    tokenizer, encoder = _bert(tiny_encoder)
    model = build_classifier(encoder, 3, "mean")
    if surface == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False)  # B != 0: LoRA acts
        model.encoder = get_peft_model(encoder, lora)
    if surface == "ia3":
        from peft import IA3Config, get_peft_model

        ia3 = IA3Config(  # not initialised to ones: IA3 scales something
            target_modules=["key", "value", "intermediate.dense"],
            feedforward_modules=["intermediate.dense"],
            init_ia3_weights=False,
        )
        model.encoder = get_peft_model(encoder, ia3)
    assert model.packs
    model.eval()  # dropout off on both sides: the same maths
    features = _batch(tokenizer)
    padded, padded_grads = _logits_and_grads(model, features, packs=False)
    packed, packed_grads = _logits_and_grads(model, features, packs=True)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == padded_grads.keys()
    if surface != "full":
        assert all(f"{surface}_" in n or n.startswith("head.") for n in packed_grads)
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6)


def test_training_mode_keeps_the_attention_dropout(tiny_encoder):
    from thaw.packed import packed_embed

    tokenizer, encoder = _bert(tiny_encoder, attention_probs_dropout_prob=0.5, hidden_dropout_prob=0.0)
    features = _batch(tokenizer)
    encoder.eval()
    with torch.no_grad():
        reference = packed_embed(encoder, features, "mean")
        encoder.train()
        dropped = packed_embed(encoder, features, "mean")
    assert not torch.allclose(dropped, reference)


def test_an_encoder_with_other_blocks_runs_the_librarys_forward(tiny_encoder):
    from transformers import DistilBertConfig, DistilBertModel

    from thaw.adaptation import build_classifier
    from thaw.modeling import pool
    from thaw.packed import packable

    tokenizer, bert = _bert(tiny_encoder)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    distil = DistilBertModel(config).eval()
    assert packable(bert) and not packable(distil)
    model = build_classifier(distil, 3, "mean")
    assert not model.packs
    features = {k: v for k, v in _batch(tokenizer).items() if k != "token_type_ids"}
    with torch.no_grad():
        expected = pool(distil(**features).last_hidden_state, features["attention_mask"], "mean")
        torch.testing.assert_close(model.embed(**features), expected)


def test_a_batch_is_packed_only_when_padded_enough_to_pay_for_it():
    from thaw.packed import PACK_ABOVE_PADDING, worth_packing

    def mask(lengths, width):
        return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])

    assert not worth_packing(mask([10, 10, 10, 10], 10))  # no padding
    assert not worth_packing(mask([10, 10, 10, 9], 10))  # a length-bucketed batch: 2.5%
    assert worth_packing(mask([10, 3, 4, 5], 10))  # a class-balanced one: 45%
    edge = round(10 * (1 - PACK_ABOVE_PADDING))
    assert worth_packing(mask([edge], 10))


def test_a_roberta_shaped_encoder_packs_with_its_own_positions(tiny_encoder):
    """RoBERTa counts positions from its padding index: its own embeddings module does."""
    from transformers import RobertaConfig, RobertaModel

    from thaw.modeling import pool
    from thaw.packed import packable, packed_embed

    tokenizer, _ = _bert(tiny_encoder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=2,
    )
    roberta = RobertaModel(config).eval()
    features = _batch(tokenizer)
    assert packable(roberta)
    with torch.no_grad():
        padded = pool(roberta(**features).last_hidden_state, features["attention_mask"], "mean")
        torch.testing.assert_close(packed_embed(roberta, features, "mean"), padded, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 37])
def test_attention_by_length_groups_gives_the_padded_forwards_embedding_and_gradients(tiny_encoder, rows):
    """More rows than a group holds (37: groups of 16, 16 and 5, their widths 3 to 20
    tokens), two rows, one row: the same embedding and gradients as the library's padded
    forward, each row in the order it came."""
    import random

    from thaw.modeling import collate, encode_texts, pool
    from thaw.packed import ATTENTION_GROUP_ROWS, attention_groups, packed_embed

    tokenizer, encoder = _bert(tiny_encoder)
    encoder.eval()
    words = "my card was stolen please block it where is order refund password reset".split()
    rng = random.Random(rows)
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 18))) for _ in range(rows)]
    features = collate(tokenizer, encode_texts(tokenizer, texts, 64), range(rows), torch.device("cpu"))
    groups = attention_groups(features["attention_mask"].bool())
    assert len(groups.groups) == -(-rows // ATTENTION_GROUP_ROWS)
    assert sorted(groups.order.tolist()) == list(range(int(features["attention_mask"].sum())))

    weights = torch.linspace(-1, 1, rows * encoder.config.hidden_size).view(rows, -1)

    def embedding_and_grads(embed):
        encoder.zero_grad()
        out = embed()
        (out * weights).sum().backward()  # a different weight per element
        return out.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}

    padded, padded_grads = embedding_and_grads(
        lambda: pool(encoder(**features).last_hidden_state, features["attention_mask"], "mean")
    )
    packed, packed_grads = embedding_and_grads(lambda: packed_embed(encoder, features, "mean"))
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == padded_grads.keys()
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-4, atol=1e-5)


def test_the_packed_attention_under_bf16_autocast_stays_near_fp32(tiny_encoder):
    """The two products run in bf16 under autocast, the softmax in fp32."""
    from thaw.packed import packed_embed

    tokenizer, encoder = _bert(tiny_encoder)
    encoder.eval()
    features = _batch(tokenizer)
    with torch.no_grad():
        exact = packed_embed(encoder, features, "mean")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = packed_embed(encoder, features, "mean")
    assert low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(low, exact).min() > 0.999


def test_an_encoder_that_recomputes_activations_runs_the_librarys_forward_without_a_warning(tiny_encoder):
    """Checkpointing is the library's to run, so such a model does not pack; asked under
    transformers 5's names, with no deprecation warning in the user's log."""
    import warnings

    from thaw.adaptation import build_classifier, enable_checkpointing

    _, encoder = _bert(tiny_encoder)
    model = build_classifier(encoder, 3, "mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert model.can_pack()
        enable_checkpointing(encoder)
        assert not model.can_pack()


def test_the_written_out_attention_and_the_librarys_kernel_agree_group_by_group():
    """CPU takes the written-out path, other devices the library's kernel (its fused
    ones on CUDA): both give the same context for the same groups."""
    from thaw.packed import _attend, attention_groups

    torch.manual_seed(0)
    lengths = [3, 17, 9, 1, 12, 20, 5] * 5  # 35 rows: three groups
    mask = torch.tensor([[1] * n + [0] * (20 - n) for n in lengths]).bool()
    groups = attention_groups(mask)
    q, k, v = (torch.randn(sum(lengths), 4 * 8) for _ in range(3))
    written = _attend(q, k, v, groups, 4, 8, 0.0, 8**-0.5, written_out=True)
    library = _attend(q, k, v, groups, 4, 8, 0.0, 8**-0.5, written_out=False)
    assert written.shape == (sum(lengths), 32)
    torch.testing.assert_close(written, library, rtol=1e-5, atol=1e-6)
