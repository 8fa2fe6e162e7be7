"""WAAL (Shui, Zhou, Gagné and Wang, AISTATS 2020): M trained against a Wasserstein critic on its
classifier input (``model.adversary``, :mod:`lplgrad.adversary`), then queried by its uncertainty
and by how unlike the labeled images the critic finds each candidate (docs/method.md §8)."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.errors import ConfigError
from lplgrad.losses import waal_score
from lplgrad.nets.classifier_input import classifier_inputs
from lplgrad.strategies.base import Learner, QueryStrategy


class WAAL(QueryStrategy):
    """``selection * D(z) - (||log p||_2 + sum -log p) / 2`` highest first.

    Args:
        selection: the weight of the critic's value against the uncertainty (the authors' 10).
    """

    requires_critic = True

    def __init__(self, selection: float = 10.0) -> None:
        if selection < 0:
            raise ConfigError(f"strategy selection must be 0 or more, got {selection}")
        self.selection = selection

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        with classifier_inputs(learner.net) as seen, torch.no_grad():
            logits, _ = learner.net(x)
            critic = learner.critic(seen[-1].flatten(1))  # (B,), the critic in eval mode
        return waal_score(logits, critic, self.selection)  # (B,)
