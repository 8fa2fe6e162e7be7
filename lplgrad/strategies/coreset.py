"""Coreset (Sener & Savarese, ICLR 2018): k-center greedy on M's pooled penultimate features.

The labeled set gives the initial centres. Memory grows with N times the feature size: the
distance to the nearest centre is kept as one vector and updated one centre at a time, never an
N x N (or N x M) matrix.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.strategies.base import QueryStrategy


def _sq_dist_to(points: Tensor, sq_norms: Tensor, centres: Tensor) -> Tensor:
    """Squared distances of every point to each centre. (N, D), (N,), (K, D) -> (N, K)"""
    d = sq_norms[:, None] - 2.0 * points @ centres.T + centres.pow(2).sum(1)[None, :]
    return d.clamp_min_(0)


def k_center_greedy(points: Tensor, centres: Tensor, k: int, block: int = 1024) -> Tensor:
    """Greedy k-center: repeatedly take the point farthest from its nearest centre.

    points: (N, D) candidates, centres: (M, D) initial centres (M may be 0) -> (min(k, N),)
    indices into ``points`` in the order they were picked. Ties go to the smaller index. Memory:
    the points, one (N,) vector and one (N, block) tile for the initial centres.
    """
    n = points.shape[0]
    k = min(k, n)
    points = points.float().contiguous()
    sq = points.pow(2).sum(1)  # (N,)
    nearest = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
    for s in range(0, centres.shape[0], block):  # (N, block) at a time
        tile = _sq_dist_to(points, sq, centres[s : s + block].to(points))
        nearest = torch.minimum(nearest, tile.min(1).values)
    picked = torch.empty(k, dtype=torch.long, device=points.device)
    for i in range(k):  # j stays a device tensor: no host round trip per pick on a GPU
        j = torch.argmax(nearest)  # all inf (no centres yet): the first point
        picked[i] = j
        d = (sq + sq[j] - 2.0 * (points @ points[j])).clamp_min_(0)  # (N,)
        torch.minimum(nearest, d, out=nearest)
        nearest[j] = -1.0  # never picked twice
    return picked


class Coreset(QueryStrategy):
    uses_labeled = True

    def measure(self, learner: nn.Module, x: Tensor) -> Tensor:
        with torch.no_grad():
            _, feats = learner.net(x)
            return torch.flatten(F.adaptive_avg_pool2d(feats[-1], 1), 1).float()  # (B, D)

    def scores(self, measures: Tensor, labeled: Tensor | None, k: int, generator: torch.Generator) -> Tensor:
        centres = labeled if labeled is not None else measures.new_zeros(0, measures.shape[1])
        picked = k_center_greedy(measures, centres, k)
        scores = torch.zeros(measures.shape[0], device=measures.device)
        scores[picked] = torch.arange(len(picked), 0, -1, device=measures.device, dtype=scores.dtype)
        return scores  # the greedy order: first pick highest, unpicked 0
