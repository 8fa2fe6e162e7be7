"""The ranking loss against a literal transcription of docs/method.md §2, and the entropy."""

import math

import pytest
import torch

from lplgrad.losses import entropy, least_confidence, loss_prediction_loss, margin_uncertainty


def transcription(l_hat: list[float], l: list[float], margin: float) -> float:
    """docs/method.md §2 word for word: pair i with 2B-1-i, one = +1 if d > 0 else -1, mean hinge."""
    n = len(l_hat)
    pairs = [(i, n - 1 - i) for i in range(n // 2)]
    if not pairs:
        return 0.0
    total = 0.0
    for i, j in pairs:
        d_hat = l_hat[i] - l_hat[j]
        d = l[i] - l[j]
        one = 1.0 if d > 0 else -1.0
        total += max(0.0, margin - one * d_hat)
    return total / len(pairs)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 33, 128])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_matches_transcription(n, margin):
    g = torch.Generator().manual_seed(n)
    l_hat = torch.randn(n, generator=g, dtype=torch.float64)
    l = torch.rand(n, generator=g, dtype=torch.float64) * 3
    if n >= 4:  # ties: equal true losses in a pair must give one = -1
        l[1] = l[n - 2]
    got = loss_prediction_loss(l_hat, l, margin)
    assert got.item() == pytest.approx(transcription(l_hat.tolist(), l.tolist(), margin), rel=1e-12, abs=1e-12)


def test_tie_uses_minus_one():
    l_hat = torch.tensor([0.2, 0.0])
    l = torch.tensor([1.0, 1.0])
    # d = 0 -> one = -1 -> max(0, 1 + 0.2)
    assert loss_prediction_loss(l_hat, l, 1.0).item() == pytest.approx(1.2)


def test_targets_detached_and_batch_of_one_keeps_graph():
    l_hat = torch.randn(5, requires_grad=True)
    l = torch.rand(5, requires_grad=True)
    loss_prediction_loss(l_hat, l).backward()
    assert l.grad is None or torch.all(l.grad == 0)
    assert l_hat.grad is not None and l_hat.grad[2] == 0  # the middle of an odd batch is unpaired
    one = torch.randn(1, requires_grad=True)
    out = loss_prediction_loss(one, torch.rand(1))
    out.backward()
    assert out.item() == 0.0 and one.grad is not None


def test_entropy_and_friends():
    uniform = torch.zeros(1, 4)
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert entropy(uniform).item() == pytest.approx(math.log(4))
    assert entropy(peaked).item() < 0.01
    both = torch.cat([uniform, peaked])
    assert torch.all(entropy(both)[0] > entropy(both)[1])
    assert least_confidence(both)[0] > least_confidence(both)[1]
    assert margin_uncertainty(both)[0] > margin_uncertainty(both)[1]
