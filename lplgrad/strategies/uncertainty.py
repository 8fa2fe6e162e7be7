"""Classic uncertainty sampling on M's softmax output: Entropy, Margin, Least confidence."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.losses import entropy, least_confidence, margin_uncertainty
from lplgrad.strategies.base import Learner, QueryStrategy


class Entropy(QueryStrategy):
    """Highest predictive entropy H(x) first (Wang & Shang 2014; docs/method.md §4)."""

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        with torch.no_grad():
            return entropy(learner.net(x)[0]).float()


class Margin(QueryStrategy):
    """Smallest gap between the two most probable classes first (Scheffer et al. 2001)."""

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        with torch.no_grad():
            return margin_uncertainty(learner.net(x)[0]).float()


class LeastConfidence(QueryStrategy):
    """Lowest top-class probability first."""

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        with torch.no_grad():
            return least_confidence(learner.net(x)[0]).float()
