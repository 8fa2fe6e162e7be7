"""What the embedding strategies read of M: pooled last-stage features, and the classifier's input."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.nets.pool import pooled
from lplgrad.strategies.base import Learner


def last_stage_embedding(learner: Learner, x: Tensor) -> Tensor:
    """M's pooled last-stage output. x: (B, ...) -> (B, D)"""
    with torch.no_grad():
        _, feats = learner.net(x)
        return pooled(feats[-1]).float()


def probabilities_and_penultimate(learner: Learner, x: Tensor) -> tuple[Tensor, Tensor]:
    """M's class probabilities (B, C) and the input of its classifier (B, D), from one forward pass."""
    seen: list[Tensor] = []
    handle = learner.net.head.register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            logits, _ = learner.net(x)
    finally:
        handle.remove()
    return logits.float().softmax(1), seen[-1].float().flatten(1)
