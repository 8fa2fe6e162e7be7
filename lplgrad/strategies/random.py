"""Rand: b random samples of the candidate subset (docs/method.md, "Baselines")."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lplgrad.strategies.base import QueryStrategy


class Random(QueryStrategy):
    """Uniform random scores drawn from the round's seeded generator: reproducible per seed."""

    needs_images = False

    def measure(self, learner: nn.Module, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], device=x.device)  # (B,)

    def scores(self, measures: Tensor, labeled: Tensor | None, k: int, generator: torch.Generator) -> Tensor:
        return torch.rand(measures.shape[0], generator=generator).to(measures.device)
