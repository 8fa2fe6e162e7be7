"""BADGE (Ash et al., ICLR 2020): diverse batches of uncertain samples from gradient embeddings.

A sample's gradient embedding is the gradient of the cross-entropy at its predicted class with
respect to the classifier's weights: g = (p - e_yhat) (x) h, with p the class probabilities and h
the classifier's input (C x D values). The batch is chosen by k-means++ seeding on these
embeddings: the largest first, then each next one drawn with probability proportional to its
squared distance to the nearest one chosen. The C x D embeddings are never formed: with
u = p - e_yhat, <g_x, g_y> = <u_x, u_y> <h_x, h_y>, so every distance costs O(C + D), and memory
stays O(N (C + D)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, pick_order_scores
from lplgrad.strategies.embedding import probabilities_and_penultimate


def gradient_factors(probs: Tensor) -> Tensor:
    """u = p - e_yhat, the probability side of the gradient embedding. (N, C) -> (N, C)"""
    u = probs.clone()
    u[torch.arange(len(u)), probs.argmax(1)] -= 1.0
    return u


def sq_dist_to(u: Tensor, h: Tensor, sq: Tensor, j: int) -> Tensor:
    """Squared distances of every embedding to embedding j, factorised. -> (N,)"""
    return (sq + sq[j] - 2.0 * (u @ u[j]) * (h @ h[j])).clamp_min_(0)


def kmeans_pp(u: Tensor, h: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding on the embeddings u (x) h: (N, C), (N, D) -> (min(k, N),) picks in order.

    The distances are computed where u and h live (a GPU's measures stay there); each draw is made
    on the CPU from the same float32 weights with ``generator``, so the picks do not depend on the
    device the measures are on.
    """
    n = u.shape[0]
    k = min(k, n)
    u, h = u.double(), h.double()
    sq = u.pow(2).sum(1) * h.pow(2).sum(1)  # ||g||^2 = ||u||^2 ||h||^2
    first = int(torch.argmax(sq))
    picked = [first]
    d2 = sq_dist_to(u, h, sq, first)
    d2[first] = 0.0
    taken = torch.zeros(n, dtype=torch.bool, device=u.device)
    taken[first] = True
    while len(picked) < k:
        weights = d2.clamp_min(0).masked_fill(taken, 0.0)
        if float(weights.sum()) <= 0.0:  # the rest coincide with picks: uniformly among them
            weights = (~taken).double()
        j = int(torch.multinomial(weights.float().cpu(), 1, generator=generator))  # (N,) to the host: one copy a pick
        picked.append(j)
        taken[j] = True
        d2 = torch.minimum(d2, sq_dist_to(u, h, sq, j))
    return torch.tensor(picked, dtype=torch.long)


class BADGE(QueryStrategy):
    """Batch Active learning by Diverse Gradient Embeddings: k-means++ seeds on the classifier's
    gradient embeddings (higher score = picked earlier; the rest score 0)."""

    def measure(self, learner: Learner, x: Tensor) -> tuple[Tensor, Tensor]:
        return probabilities_and_penultimate(learner, x)  # (B, C), (B, D)

    def scores(self, measures: tuple[Tensor, Tensor], ctx: ScoreContext) -> Tensor:
        probs, h = measures
        picked = kmeans_pp(gradient_factors(probs), h, ctx.k, ctx.generator)
        return pick_order_scores(picked, probs.shape[0])  # the seeding order: first pick highest, unpicked 0
