"""Rand: b random samples of the candidate subset (docs/method.md, "Baselines")."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext


class Random(QueryStrategy):
    """Uniform random scores drawn from the round's seeded generator: reproducible per seed."""

    needs_images = False

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], device=x.device)  # (B,)

    def scores(self, measures: Tensor, ctx: ScoreContext) -> Tensor:
        return torch.rand(measures.shape[0], generator=ctx.generator).to(measures.device)
