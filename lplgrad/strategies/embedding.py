"""What the embedding strategies read of M: pooled last-stage features, and the classifier's input."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.nets.classifier_input import classifier_inputs
from lplgrad.nets.pool import pooled
from lplgrad.strategies.base import Learner


def last_stage_embedding(learner: Learner, x: Tensor) -> Tensor:
    """M's pooled last-stage output. x: (B, ...) -> (B, D)"""
    with torch.no_grad():
        _, feats = learner.net(x)
        return pooled(feats[-1]).float()


def probabilities_and_penultimate(learner: Learner, x: Tensor) -> tuple[Tensor, Tensor]:
    """M's class probabilities (B, C) and the input of its classifier (B, D), from one forward pass."""
    with classifier_inputs(learner.net) as seen, torch.no_grad():
        logits, _ = learner.net(x)
    return logits.float().softmax(1), seen[-1].float().flatten(1)
