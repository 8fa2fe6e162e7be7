"""One strategy until the labeled set reaches a size, another after: a cold-start strategy for
the first rounds (TypiClust), then one for a trained network (BADGE, LPLgrad's query, ...)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lplgrad.strategies.base import QueryStrategy


class SwitchAt(QueryStrategy):
    """``first`` while fewer than ``labeled`` samples are labeled, ``then`` from there on.

    Both measure every candidate (their measures side by side); the labeled set is measured so
    that its size is known.
    """

    uses_labeled = True

    def __init__(self, first: QueryStrategy, then: QueryStrategy, labeled: int) -> None:
        self.first, self.then, self.labeled = first, then, labeled
        self.requires_aux = first.requires_aux or then.requires_aux
        self._width = 0  # columns of the first strategy's measures, set by measure

    def measure(self, learner: nn.Module, x: Tensor) -> Tensor:
        a, b = self.first.measure(learner, x), self.then.measure(learner, x)
        self._width = 1 if a.dim() == 1 else a.shape[1]
        return torch.cat([a.reshape(len(x), -1), b.reshape(len(x), -1)], 1)

    def _part(self, m: Tensor, first: bool) -> Tensor:
        """One strategy's columns of the side-by-side measures (a single column as a vector)."""
        part = m[:, : self._width] if first else m[:, self._width :]
        return part.squeeze(1) if part.shape[1] == 1 else part

    def scores(self, measures: Tensor, labeled: Tensor | None, k: int, generator: torch.Generator) -> Tensor:
        use_first = (0 if labeled is None else labeled.shape[0]) < self.labeled
        strategy = self.first if use_first else self.then
        lab = self._part(labeled, use_first) if strategy.uses_labeled and labeled is not None else None
        return strategy.scores(self._part(measures, use_first), lab, k, generator)
