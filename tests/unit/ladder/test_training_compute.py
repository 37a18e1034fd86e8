"""What a fine-tuning fit reports about its compute: optimiser steps, their wall time, the
real tokens they saw, and the matmul FLOPs per token its trainable surface costs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _encoder():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    return BertModel(config)


def _block_weights(encoder, block: int) -> int:
    return sum(p.numel() for n, p in encoder.named_parameters() if f"layer.{block}." in n)


def test_flops_per_token_follow_the_trainable_surface():
    from thaw.adaptation import training_flops_per_token

    encoder = _encoder()
    blocks = [_block_weights(encoder, b) for b in range(3)]
    n = sum(blocks)  # embeddings and the pooler do no per-token matmul work here
    assert training_flops_per_token(encoder) == 6 * n  # everything trains: forward 2, backward 4
    for p in encoder.parameters():
        p.requires_grad_(False)
    assert training_flops_per_token(encoder) == 2 * n  # nothing trains: forward only
    for name, p in encoder.named_parameters():
        p.requires_grad_("layer.2." in name)  # the top block alone (partial unfreezing)
    assert training_flops_per_token(encoder) == 2 * n + 4 * blocks[2]
    for name, p in encoder.named_parameters():
        p.requires_grad_("layer.0." in name and "bias" in name)  # a few weights low down (adapters)
    biases = sum(p.numel() for name, p in encoder.named_parameters() if "layer.0." in name and "bias" in name)
    assert training_flops_per_token(encoder) == 4 * n + 2 * biases  # the gradient runs back through all


def test_steps_that_replay_frozen_blocks_count_no_forward_work_for_them():
    from thaw.adaptation import training_flops_per_token

    encoder = _encoder()
    blocks = [_block_weights(encoder, b) for b in range(3)]
    for name, p in encoder.named_parameters():
        p.requires_grad_("layer.2." in name)
    assert training_flops_per_token(encoder) == 2 * sum(blocks) + 4 * blocks[2]
    # the lower two blocks' output replayed from thaw.frozen_prefix: the top block alone runs
    assert training_flops_per_token(encoder, replayed_blocks=2) == 2 * blocks[2] + 4 * blocks[2]


def test_the_loop_counts_its_steps_real_tokens_and_their_time(tmp_path):
    from thaw.config import FineTuneConfig
    from thaw.trainer import Checkpoint, TrainPlan, train_loop

    model = torch.nn.Linear(4, 2)
    lengths = [3, 5, 2, 7]  # real tokens per row
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 0, 1])
    plan = TrainPlan(
        batches=lambda epoch: [[0, 1], [2, 3]],
        loss=lambda m, idx: torch.nn.functional.cross_entropy(m(x[idx]), y[idx]),
        evaluate=None,
        tokens=lambda idx: sum(lengths[i] for i in idx),
    )
    cfg = FineTuneConfig(epochs=3, patience=5)
    groups = [{"params": list(model.parameters())}]
    outcome = train_loop(model, plan, cfg, 0.01, groups, Checkpoint(tmp_path / "ck"), torch.device("cpu"), 0)
    assert outcome.steps == 6 and outcome.tokens == 3 * sum(lengths)
    assert outcome.step_seconds > 0
    again = train_loop(model, plan, cfg, 0.01, groups, Checkpoint(tmp_path / "ck"), torch.device("cpu"), 0)
    assert (again.resumed_from_epoch, again.steps, again.tokens) == (2, 0, 0)  # resumed at the end: nothing ran
