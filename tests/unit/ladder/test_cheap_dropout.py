"""Dropout with four mask elements to a random draw (thaw.dropout): the rate asked for,
the scale that keeps the expectation, the seed's replay, and the gradient through the mask."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_drops_at_the_rate_asked_for(p):
    from thaw.dropout import keep_mask

    torch.manual_seed(0)
    kept = keep_mask((1000, 1000), p, torch.device("cpu")).float().mean().item()
    assert abs(kept - (1 - p)) < 0.002  # 1e6 draws: the standard error is under 0.0005
    lanes = keep_mask((4, 250_000), p, torch.device("cpu")).float().mean(1)  # each of the four lanes of a draw
    assert (lanes - (1 - p)).abs().max() < 0.005


def test_kept_elements_are_scaled_and_the_seed_replays_the_mask():
    from thaw.dropout import dropout

    x = torch.ones(64, 33)  # not a multiple of four elements a draw
    torch.manual_seed(7)
    first = dropout(x, 0.25)
    torch.manual_seed(7)
    again = dropout(x, 0.25)
    assert torch.equal(first, again)
    assert set(first.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert 0 < (first == 0).sum() < first.numel()
    assert dropout(x, 0.25, training=False) is x
    assert dropout(x, 0.0) is x


def test_the_gradient_flows_through_the_kept_elements_only():
    from thaw.dropout import dropout

    x = torch.randn(50, 40, requires_grad=True)
    torch.manual_seed(3)
    out = dropout(x, 0.3)
    out.sum().backward()
    kept = out.detach() != 0
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
