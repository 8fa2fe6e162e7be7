"""Coreset (Sener & Savarese, ICLR 2018): k-center greedy on M's pooled penultimate features.

The labeled set gives the initial centres. Memory grows with N times the feature size: the
distance to the nearest centre is kept as one vector and updated one centre at a time, from
distances computed a block of likely picks at a time; never an N x N (or N x M) matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, pick_order_scores
from lplgrad.strategies.embedding import last_stage_embedding


def sq_distances(points: Tensor, sq_norms: Tensor, centres: Tensor) -> Tensor:
    """Squared distances of every point to each centre. (N, D), (N,), (K, D) -> (N, K)"""
    d = sq_norms[:, None] - 2.0 * points @ centres.T + centres.pow(2).sum(1)[None, :]
    return d.clamp_min_(0)


def _pick(nearest: Tensor, picked: Tensor, i: int, j: Tensor, dist_row: Tensor) -> None:
    """Record pick i (point j), lower every point's distance to its nearest centre by its distance
    to j (``dist_row``, (N,)), and take j out of the running."""
    picked[i] = j
    torch.minimum(nearest, dist_row, out=nearest)
    nearest[j] = -1.0  # never picked twice


def k_center_greedy(points: Tensor, centres: Tensor, k: int, block: int = 1024, lookahead: int = 256) -> Tensor:
    """Greedy k-center: repeatedly take the point farthest from its nearest centre.

    points: (N, D) candidates, centres: (M, D) initial centres (M may be 0) -> (min(k, N),)
    indices into ``points`` in the order they were picked. Ties go to the smaller index.

    Each pick needs every point's distance to the point just picked. Rather than one
    matrix-vector product per pick, distances to the ``lookahead`` points currently farthest from
    their centres are computed in one matrix product, (lookahead, N); the picks then proceed from
    those rows for as long as the farthest point is one of them, which is certain while its
    distance exceeds every other point's (distances to the nearest centre only shrink). When it
    is not, a new block is made, or one pick is made the plain way. Memory: the points, two (N,)
    vectors and one (N, block) or (lookahead, N) tile; never an N x N matrix.
    """
    n = points.shape[0]
    k = min(k, n)
    points = points.float().contiguous()
    sq = points.pow(2).sum(1)  # (N,)
    nearest = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
    for s in range(0, centres.shape[0], block):  # (N, block) at a time
        tile = sq_distances(points, sq, centres[s : s + block].to(points))
        nearest = torch.minimum(nearest, tile.min(1).values)
    picked = torch.empty(k, dtype=torch.long, device=points.device)
    i = 0
    while i < k:
        rows = (
            torch.topk(nearest, min(lookahead, n - i)).indices.sort().values
        )  # ascending: argmax ties -> smaller index
        outside = nearest.clone()
        outside[rows] = -float("inf")
        bound = outside.max()  # no point outside the block is farther than this, now or later
        # as the plain pick's distances below, a row per block point: (lookahead, N)
        dist = (sq[None, :] + sq[rows, None] - 2.0 * (points[rows] @ points.T)).clamp_min_(0)
        made = 0
        while i < k:
            local = torch.argmax(nearest[rows])
            j = rows[local]
            if not bool(nearest[j] > bound):  # the farthest point may lie outside: a new block
                break
            _pick(nearest, picked, i, j, dist[local])
            i, made = i + 1, made + 1
        if made == 0 and i < k:  # ties at the top (e.g. no centres yet): one pick the plain way
            j = torch.argmax(nearest)
            _pick(nearest, picked, i, j, (sq + sq[j] - 2.0 * (points @ points[j])).clamp_min_(0))
            i += 1
    return picked


class Coreset(QueryStrategy):
    uses_labeled = True

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return last_stage_embedding(learner, x)  # (B, D)

    def scores(self, measures: Tensor, ctx: ScoreContext) -> Tensor:
        centres = ctx.labeled if ctx.labeled is not None else measures.new_zeros(0, measures.shape[1])
        picked = k_center_greedy(measures, centres, ctx.k)
        return pick_order_scores(picked, measures.shape[0], measures.device)  # the greedy order, first pick highest
