"""WAAL's adversarial training: M against a Wasserstein critic on its classifier input (Shui, Zhou,
Gagné and Wang, "Deep Active Learning: Unified and Principled Method for Query and Training",
AISTATS 2020; constants from the authors' code, cjshui/WAAL; docs/method.md §8).

Each training step pairs the labeled batch with an equally large batch of unlabeled images
(:meth:`lplgrad.pool_data.PoolData.pair_unlabeled`). With z the classifier's input and D the critic:

- M's step adds ``alpha * (mean D(z_u) - gamma * mean D(z_l))`` to its loss, the critic held
  still: M learns features on which unlabeled images look labeled. ``gamma`` is |L| / |U|, the
  authors' ratio for the unequal sizes of the two sets.
- the critic's step, on the same (detached) features, maximises that gap with a gradient penalty
  ``((||grad_z D||_2 - 1)^2)`` at random interpolates between the unlabeled and labeled features
  and at both ends, weighted ``alpha * penalty``.

Where this differs from the authors' code, and why, is in docs/method.md §8: the penalty's sign
in the critic's step (their code maximises it; here it keeps the critic's gradient norm near 1,
as a gradient penalty does), no penalty in M's step (theirs is computed on features without a
gradient path, so it changes nothing), and the critic's step reads the features of M's step
rather than a second forward pass after it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from lplgrad.errors import ConfigError
from lplgrad.nets.critic import WassersteinCritic


class WAALAdversary:
    """The critic's shape, its optimiser and the weights of WAAL's terms (``model.adversary``).

    Args:
        alpha: the weight of the Wasserstein gap in both steps (the authors' 2e-3).
        penalty: the gradient penalty's weight in the critic's step, times alpha (the authors' 2).
        hidden, dropout: the critic's hidden width and dropout (the authors' 50 and 0.5).
        lr, momentum: the critic's SGD (the authors' 0.01 and 0.5 for Fashion-MNIST and SVHN, no
            weight decay, no schedule); made anew every round with M's optimisers.
        gamma: the weight of the labeled term; None: |L| / |U| of the round, as the authors' code.
    """

    def __init__(
        self,
        alpha: float = 2e-3,
        penalty: float = 2.0,
        hidden: int = 50,
        dropout: float = 0.5,
        lr: float = 0.01,
        momentum: float = 0.5,
        gamma: float | None = None,
    ) -> None:
        if alpha <= 0 or penalty < 0 or hidden < 1 or not 0 <= dropout < 1 or lr <= 0 or momentum < 0:
            raise ConfigError(
                "model.adversary: alpha and lr must be positive, penalty and momentum 0 or more, hidden at least 1 "
                "and dropout in [0, 1)"
            )
        if gamma is not None and gamma < 0:
            raise ConfigError(f"model.adversary.gamma must be 0 or more (or null: |L| / |U|), got {gamma}")
        self.alpha, self.penalty, self.hidden, self.dropout = alpha, penalty, hidden, dropout
        self.lr, self.momentum, self.gamma = lr, momentum, gamma

    def build(self, in_features: int) -> WassersteinCritic:
        return WassersteinCritic(in_features, self.hidden, self.dropout)

    def optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)

    def __repr__(self) -> str:
        return f"WAALAdversary({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def wasserstein_gap(d_unlabeled: Tensor, d_labeled: Tensor, gamma: float) -> Tensor:
    """mean D(z_u) - gamma * mean D(z_l): the critic's estimate of how far apart the sets lie.
    d_unlabeled (B_u,), d_labeled (B_l,) -> ()"""
    return d_unlabeled.mean() - gamma * d_labeled.mean()


def gradient_penalty(critic: nn.Module, z_u: Tensor, z_l: Tensor, weights: Tensor) -> Tensor:
    """mean (||grad_z D(z)||_2 - 1)^2 over the interpolates z_u + w (z_l - z_u) of the first
    min(B_u, B_l) pairs and over every z_u and z_l, as the authors' code takes it.

    z_u (B_u, D), z_l (B_l, D), weights (>= min(B_u, B_l),) in [0, 1] -> (); differentiable in D's
    parameters (the gradient is taken with ``create_graph``)."""
    n = min(len(z_u), len(z_l))
    between = z_u[:n] + weights[:n, None] * (z_l[:n] - z_u[:n])  # (n, D)
    points = torch.cat([between, z_u, z_l]).detach().requires_grad_(True)  # (n + B_u + B_l, D)
    (grad,) = torch.autograd.grad(critic(points).sum(), points, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(critic: nn.Module, z_u: Tensor, z_l: Tensor, gamma: float, adversary: WAALAdversary) -> Tensor:
    """The critic's step: -alpha * gap + alpha * penalty * gradient penalty, on detached features.
    The interpolation weights come from the global random stream (saved in every checkpoint)."""
    z_u, z_l = z_u.detach(), z_l.detach()
    gap = wasserstein_gap(critic(z_u), critic(z_l), gamma)
    weights = torch.rand(min(len(z_u), len(z_l)), device=z_u.device, dtype=z_u.dtype)
    return -adversary.alpha * gap + adversary.alpha * adversary.penalty * gradient_penalty(critic, z_u, z_l, weights)


def critic_gradients(
    critic: nn.Module, z_u: Tensor, z_l: Tensor, gamma: float, adversary: WAALAdversary
) -> list[Tensor]:
    """The gradients of :func:`critic_loss` in the critic's parameters, computed with
    ``torch.autograd.grad``: nothing is accumulated into ``.grad``, so under DDP the step's one
    backward pass (M's) stays the only one the data-parallel wrapper sees."""
    params = [p for p in critic.parameters() if p.requires_grad]
    return list(torch.autograd.grad(critic_loss(critic, z_u, z_l, gamma, adversary), params))
