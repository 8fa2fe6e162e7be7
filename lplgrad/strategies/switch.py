"""One strategy until the labeled set reaches a size, another after: a cold-start strategy for
the first rounds (TypiClust), then one for a trained network (BADGE, LPLgrad's query, ...)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lplgrad.strategies.base import FitData, Learner, Measures, QueryStrategy, ScoreContext


class SwitchAt(QueryStrategy):
    """``first`` while fewer than ``labeled`` samples are labeled, ``then`` from there on.

    Both measure every candidate (their measures side by side, as a pair); the labeled set is
    measured only when one of them needs it.
    """

    def __init__(self, first: QueryStrategy, then: QueryStrategy, labeled: int) -> None:
        self.first, self.then, self.labeled = first, then, labeled
        self.requires_aux = first.requires_aux or then.requires_aux
        self.uses_labeled = first.uses_labeled or then.uses_labeled
        self.requires_dropout = first.requires_dropout or then.requires_dropout
        self.requires_critic = first.requires_critic or then.requires_critic
        self.trains = first.trains or then.trains
        self.reads_raw_images = first.reads_raw_images or then.reads_raw_images

    def fit(self, learner: Learner, data: FitData, generator: torch.Generator) -> tuple[Any, Any]:
        """Each part that trains fits its networks (the other's slot stays None)."""
        return tuple(p.fit(learner, data, generator) if p.trains else None for p in (self.first, self.then))

    def load_fitted(self, state: tuple[Any, Any], device: torch.device) -> None:
        for part, st in zip((self.first, self.then), state):
            if part.trains:
                part.load_fitted(st, device)

    def measure(self, learner: Learner, x: Tensor) -> tuple[Measures, Measures]:
        return self.first.measure(learner, x), self.then.measure(learner, x)

    def scores(self, measures: tuple[Measures, Measures], ctx: ScoreContext) -> Tensor:
        use_first = ctx.n_labeled < self.labeled
        strategy, part = (self.first, 0) if use_first else (self.then, 1)
        lab = ctx.labeled[part] if strategy.uses_labeled and ctx.labeled is not None else None
        return strategy.scores(measures[part], ScoreContext(ctx.round, ctx.n_labeled, ctx.k, ctx.generator, lab))
