"""BALD and BatchBALD: mutual information between a label and the network's weights, under MC
dropout (docs/method.md §8).

BALD (Houlsby et al. 2011; Gal, Islam and Ghahramani, ICML 2017) scores each candidate alone:
I(y; w | x) = H[mean_t p(y | x, w_t)] - mean_t H[p(y | x, w_t)]. BatchBALD (Kirsch, van Amersfoort
and Gal, NeurIPS 2019) picks the batch greedily by the joint mutual information
I(y_1..y_n; w), which does not reward a second copy of what the batch already holds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.errors import ConfigError
from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, pick_order_scores
from lplgrad.strategies.batchbald import batchbald_picks
from lplgrad.strategies.mc_dropout import mc_log_probs, query_seed


def expected_entropy(log_probs: Tensor) -> Tensor:
    """mean_t H[p(y | x, w_t)]. (N, T, C) -> (N,)"""
    return -(log_probs.exp() * log_probs).sum(-1).mean(-1)


def predictive_entropy(log_probs: Tensor) -> Tensor:
    """H[mean_t p(y | x, w_t)]. (N, T, C) -> (N,)"""
    t = log_probs.shape[1]
    mean_log = torch.logsumexp(log_probs, dim=1) - torch.log(torch.tensor(float(t)))  # (N, C)
    return -(mean_log.exp() * mean_log).sum(-1)


def mutual_information(log_probs: Tensor) -> Tensor:
    """BALD's score I(y; w | x), never below 0. (N, T, C) -> (N,)"""
    return (predictive_entropy(log_probs) - expected_entropy(log_probs)).clamp_min(0)


class _MCDropoutStrategy(QueryStrategy):
    requires_dropout = True

    def __init__(self, samples: int = 20, seed: int = 0) -> None:
        if samples < 2:
            raise ConfigError(f"strategy samples (T) must be at least 2, got {samples}")
        self.samples, self.seed = samples, seed

    def log_probs(self, learner: Learner, x: Tensor) -> Tensor:
        return mc_log_probs(learner, x, self.samples, query_seed(learner, self.seed))  # (B, T, C)


class BALD(_MCDropoutStrategy):
    """Highest mutual information I(y; w | x) first, from ``samples`` (T) consistent MC-dropout
    passes; ``seed`` seeds the dropout masks with the round."""

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return mutual_information(self.log_probs(learner, x))


class BatchBALD(_MCDropoutStrategy):
    """The batch of highest joint mutual information, picked greedily (higher score = picked earlier;
    the rest score 0).

    Args:
        samples: T, the MC-dropout passes.
        configurations: m, the most label configurations of the batch so far that are kept: the
            joint entropy is exact while the batch's C^n configurations are at most m, and
            estimated from m sampled configurations after (Kirsch et al. §3.3).
        seed: seeds the dropout masks (with the round); the sampled configurations use the
            round's generator.
    """

    def __init__(self, samples: int = 20, configurations: int = 1_000, seed: int = 0) -> None:
        super().__init__(samples, seed)
        if configurations < 1:
            raise ConfigError(f"strategy configurations must be positive, got {configurations}")
        self.configurations = configurations

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return self.log_probs(learner, x)  # (B, T, C)

    def scores(self, measures: Tensor, ctx: ScoreContext) -> Tensor:
        picked = batchbald_picks(measures.float().exp(), ctx.k, self.configurations, ctx.generator)
        return pick_order_scores(picked, measures.shape[0])
