"""The query-strategy interface and the one place where a selection is made.

A strategy turns candidates into scores; higher score = label first. Scoring has two steps so
that it can be sharded across processes: :meth:`QueryStrategy.measure` computes a per-sample
quantity on a batch (run on disjoint shards, then gathered with the indices), and
:meth:`QueryStrategy.scores` turns all gathered measures into scores (run identically on every
process). :func:`select_top` then picks the k best; nothing else selects.

What a strategy may read is written down here: the :class:`Learner` while it measures, and the
:class:`ScoreContext` while it scores. A strategy keeps no state between the two steps: what
``scores`` needs of a batch travels in the measures (a tensor, or a tuple of tensors).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol, Union

import torch
from torch import Tensor, nn

from lplgrad.errors import ConfigError
from lplgrad.nets.dropout import dropout_layers, head_rate

#: per-sample measures: one tensor (N, ...) or a tuple of them, each with N rows (gathered row-wise)
Measures = Union[Tensor, tuple["Measures", ...]]


class Learner(Protocol):
    """What a strategy may read while it measures (both applications' LightningModule).

    ``net`` is M: ``net(x)`` maps images (B, C, H, W) to (logits (B, classes), stage features, a
    list of (B, C_i, H_i, W_i)), and ``net.head`` is its classifier (a linear layer). ``loss_head``
    is A: stage features -> predicted losses (B,), or None when the run trains M alone
    (``model.use_aux false``; strategies with ``requires_aux`` refuse such runs). Both are in eval
    mode, under ``torch.no_grad`` unless the strategy enables gradients itself.
    """

    net: nn.Module
    loss_head: nn.Module | None
    #: the dropout layer before M's classifier (``model.head_dropout``), or None
    head_dropout: nn.Dropout | None
    #: the round being trained or queried (0 in a run of one round)
    round_index: int
    #: WAAL's critic on the classifier's input (``model.adversary``), or None
    critic: nn.Module | None
    #: the batches are cached rows of M's frozen features, not images (``data.feature_cache``):
    #: ``net`` takes either (:class:`~lplgrad.nets.cut.FeatureCut`)
    feature_cache: bool


@dataclass(frozen=True)
class FitData:
    """What :meth:`QueryStrategy.fit` may read: the labeled and unlabeled pool indices, a loader
    over any pool indices (the evaluation transform, in order), the device, and the number of
    training steps M made this round (VAAL makes as many iterations)."""

    labeled: Tensor
    unlabeled: Tensor
    loader_for: Callable[[Tensor, bool], Any]
    device: torch.device
    train_steps: int


@dataclass(frozen=True)
class ScoreContext:
    """What :meth:`QueryStrategy.scores` may read besides the candidates' measures.

    Attributes:
        round: the round being queried (0 after the first training).
        n_labeled: the size of the labeled set before this query.
        k: how many will be selected.
        generator: the round's seeded generator for any random draw (the same on every process).
        labeled: the labeled set's measures, gathered like the candidates' (None unless the
            strategy ``uses_labeled``, or while nothing is labeled).
    """

    round: int
    n_labeled: int
    k: int
    generator: torch.Generator
    labeled: Measures | None = None


class QueryStrategy(ABC):
    #: True when the strategy reads the auxiliary loss-prediction model A
    requires_aux: bool = False
    #: True when :meth:`scores` needs the measures of the labeled set as well
    uses_labeled: bool = False
    #: True when :meth:`measure` samples M with dropout (BALD, BatchBALD): a learner without any
    #: dropout layer is refused
    requires_dropout: bool = False
    #: True when :meth:`measure` reads the critic M was trained against (WAAL): a learner without
    #: one (``model.adversary``) is refused
    requires_critic: bool = False
    #: True when the strategy trains networks of its own before it measures (VAAL): the query
    #: calls :meth:`fit` first, on one process, and hands the result to the others
    trains: bool = False
    #: False when :meth:`measure` reads nothing of the images but their number (the loader then
    #: yields empty rows instead of decoding them)
    needs_images: bool = True
    #: True when the strategy reads the images themselves, not only what M computes from them
    #: (VAAL's VAE): refused with the feature cache, whose batches are M's frozen features
    reads_raw_images: bool = False

    @abstractmethod
    def measure(self, learner: Learner, x: Tensor) -> Measures:
        """A per-sample quantity of a batch of inputs, M in eval mode. x: (B, ...) -> (B,), (B, D),
        or a tuple of such tensors"""

    def scores(self, measures: Measures, ctx: ScoreContext) -> Tensor:
        """Scores of all candidates from their gathered measures. (N, ...) -> (N,)"""
        return measures

    def fit(self, learner: Learner, data: FitData, generator: torch.Generator) -> Any:
        """(``trains`` only) Train the strategy's own networks on the round's images; returns
        their state, which :meth:`load_fitted` installs on every process before it measures."""
        raise NotImplementedError

    def load_fitted(self, state: Any, device: torch.device) -> None:
        """(``trains`` only) Install what :meth:`fit` returned (on this process's device)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def check_learner(strategy: QueryStrategy, learner: Learner) -> None:
    """Stop with one line when ``strategy`` needs A and the learner trains M alone, needs
    dropout and M has none, reads the images while the learner runs on cached features, or
    needs the critic of an adversarial training without one."""
    name = type(strategy).__name__
    if strategy.requires_aux and learner.loss_head is None:
        raise ConfigError(f"{name} queries with the loss-prediction model: set model.use_aux true")
    if strategy.requires_dropout and not has_dropout(learner):
        raise ConfigError(
            f"{name} samples M with dropout, and this backbone has none: set model.head_dropout "
            "(0.5 in the BALD papers) to put a dropout layer before its classifier"
        )
    if strategy.reads_raw_images and getattr(learner, "feature_cache", False):
        raise ConfigError(
            f"{name} reads the images themselves, and with data.feature_cache the loaders serve M's cached "
            "frozen features instead: set data.feature_cache false, or choose a strategy that reads M's outputs"
        )
    if strategy.requires_critic and getattr(learner, "critic", None) is None:
        raise ConfigError(
            f"{name} queries with the critic M is trained against: set model.adversary "
            "lplgrad.adversary.WAALAdversary (its settings: docs/method.md §8)"
        )


def has_dropout(learner: Learner) -> bool:
    """Whether M has a dropout layer to sample from (before its classifier, or anywhere in it)."""
    return head_rate(learner) > 0 or bool(dropout_layers(learner.net))


def pick_order_scores(picked: Tensor, n: int, device: torch.device | None = None) -> Tensor:
    """Scores of n candidates from picks in order: the first pick highest (len(picked)), the
    next one less, the unpicked 0. picked (k,) indices into the n -> (n,)"""
    scores = torch.zeros(n, device=device)
    scores[picked] = torch.arange(len(picked), 0, -1, device=device, dtype=scores.dtype)
    return scores


def select_top(indices: Tensor, scores: Tensor, k: int) -> Tensor:
    """The k indices of highest score; ties go to the smaller index, so every process agrees.

    indices, scores: (N,) -> (min(k, N),)
    """
    order = torch.argsort(indices)
    indices, scores = indices[order], scores[order]
    best = torch.argsort(scores, descending=True, stable=True)[:k]
    return indices[best]
