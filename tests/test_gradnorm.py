"""Batched per-sample gradient norms equal the one-sample-at-a-time definition (float64 oracle)."""

import copy

import pytest
import torch
from torch import nn

from lplgrad.gradnorm import combine, per_sample_sq_norms, per_sample_sq_norms_loop, supports
from lplgrad.nets import ResNet18, SmallCNN
from lplgrad.strategies import EntGradNorm
from helpers.records import sample_entropy


class Mixed(nn.Module):
    """Convs with and without bias, strides, a grouped conv, BatchNorm, a 3-D Linear and a head."""

    feature_channels = [6]

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=True)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=2, bias=False)
        self.c3 = nn.Conv2d(6, 12, 1, bias=True)
        self.tok = nn.Linear(12, 8)
        self.b2 = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.relu(self.c3(self.c2(h)))  # (B, 12, 4, 4)
        t = self.tok(h.flatten(2).transpose(1, 2)).mean(1)  # (B, 8) through a 3-D Linear
        return self.head(torch.relu(self.b2(t))), [h]


def warmed(model, shape):
    """Non-trivial BatchNorm statistics and affine parameters, then eval mode."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


CASES = [
    (lambda: SmallCNN(10, 3, 4), (3, 16, 16)),
    (lambda: ResNet18(7, 1, 4), (1, 28, 28)),
    (lambda: Mixed(), (3, 8, 8)),
]


@pytest.mark.parametrize("make,shape", CASES)
@pytest.mark.parametrize("norm", ["per_tensor", "global"])
def test_batched_equals_one_sample_loop(make, shape, norm):
    model = warmed(make(), shape)
    assert supports(model) is None
    x = torch.randn(9, *shape)  # odd batch
    fast = per_sample_sq_norms(model, x, sample_entropy)
    oracle = per_sample_sq_norms_loop(copy.deepcopy(model).double(), x.double(), sample_entropy)
    assert fast.shape == (9, len(list(model.parameters())))
    a, b = combine(fast, norm), combine(oracle, norm)
    assert torch.allclose(a.double(), b, rtol=1e-5, atol=0)
    # every tensor's column, not only the total
    assert torch.allclose(fast.double(), oracle, rtol=1e-4, atol=1e-10 * oracle.max().item())


def test_parameters_untouched_and_batch_of_one():
    model = warmed(SmallCNN(4, 3, 4), (3, 8, 8))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(1, 3, 8, 8)
    fast = per_sample_sq_norms(model, x, sample_entropy)
    oracle = per_sample_sq_norms_loop(model, x, sample_entropy)
    assert torch.allclose(fast, oracle, rtol=1e-4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_strategy_chunks_and_fallback_agree():
    model = warmed(SmallCNN(4, 3, 4), (3, 16, 16))
    learner = nn.Module()
    learner.net = model
    x = torch.randn(11, 3, 16, 16)
    ref = EntGradNorm(method="loop").measure(learner, x)
    assert torch.allclose(EntGradNorm(chunk_size=3).measure(learner, x), ref, rtol=1e-5)
    assert torch.allclose(EntGradNorm().measure(learner, x), ref, rtol=1e-5)  # automatic chunk
    model.train()  # BatchNorm in train mode: not per-sample; the strategy falls back to the loop
    assert supports(model) is not None
    with pytest.warns(UserWarning, match="fall back"):
        EntGradNorm().measure(learner, x[:2])


def test_two_norms_rank_differently_on_purpose():
    sq = torch.tensor([[4.0, 0.0], [1.0, 1.0]])
    assert combine(sq, "per_tensor").tolist() == [2.0, 2.0]
    assert combine(sq, "global")[0] > combine(sq, "global")[1]
    with pytest.raises(ValueError):
        combine(sq, "l1")
