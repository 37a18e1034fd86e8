"""Embeddings are computed without dropout whatever mode the encoder was left in: the
few-shot rung fits its head on them right after contrastive training, which leaves the
encoder in training mode; the mode is given back as it was."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TEXTS = ["refund my card", "where is my order please", "password reset", "cancel subscription"]


@pytest.mark.parametrize("training", [True, False])
def test_embeddings_are_those_of_eval_mode_and_the_mode_is_kept(tiny_encoder, training):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from thaw.config import BackboneConfig
    from thaw.modeling import embed_texts

    tokenizer = BertTokenizerFast.from_pretrained(tiny_encoder)
    config = BertConfig.from_pretrained(tiny_encoder, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    torch.manual_seed(0)
    model = BertModel(config).train(training)
    cfg, cpu = BackboneConfig(batch_size=2), torch.device("cpu")

    first = embed_texts(TEXTS, tokenizer, model, cfg, cpu)
    second = embed_texts(TEXTS, tokenizer, model, cfg, cpu)
    assert model.training is training
    model.eval()
    expected = embed_texts(TEXTS, tokenizer, model, cfg, cpu)
    np.testing.assert_allclose(first, expected, atol=1e-2)  # bf16 autocast where the CPU has it
    np.testing.assert_array_equal(first, second)
