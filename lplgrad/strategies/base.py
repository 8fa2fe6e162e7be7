"""The query-strategy interface and the one place where a selection is made.

A strategy turns candidates into scores; higher score = label first. Scoring has two steps so
that it can be sharded across processes: :meth:`QueryStrategy.measure` computes a per-sample
quantity on a batch (run on disjoint shards, then gathered with the indices), and
:meth:`QueryStrategy.scores` turns all gathered measures into scores (run identically on every
process). :func:`select_top` then picks the k best; nothing else selects.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class QueryStrategy(ABC):
    #: True when the strategy reads the auxiliary loss-prediction model A
    requires_aux: bool = False
    #: True when :meth:`scores` needs the measures of the labeled set as well
    uses_labeled: bool = False
    #: False when :meth:`measure` reads nothing of the images but their number (the loader then
    #: yields empty rows instead of decoding them)
    needs_images: bool = True

    @abstractmethod
    def measure(self, learner: nn.Module, x: Tensor) -> Tensor:
        """A per-sample quantity of a batch of inputs, M in eval mode. x: (B, ...) -> (B,) or (B, D)"""

    def scores(self, measures: Tensor, labeled: Tensor | None, k: int, generator: torch.Generator) -> Tensor:
        """Scores of all candidates from their gathered measures. (N, ...) -> (N,)"""
        return measures

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def select_top(indices: Tensor, scores: Tensor, k: int) -> Tensor:
    """The k indices of highest score; ties go to the smaller index, so every process agrees.

    indices, scores: (N,) -> (min(k, N),)
    """
    order = torch.argsort(indices)
    indices, scores = indices[order], scores[order]
    best = torch.argsort(scores, descending=True, stable=True)[:k]
    return indices[best]
