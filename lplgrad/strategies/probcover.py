"""ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022): maximum coverage of the
embedding space by balls of radius delta, for very small budgets (docs/method.md §8).

Points: M's pooled last-stage embeddings of the labeled set and the candidates, L2-normalised.
The ball graph has an edge x -> x' when ||x - x'|| <= delta. A greedy pick takes the candidate
whose ball covers the most points not yet covered (a labeled point's ball is covered from the
start), then marks its ball covered. When every point is covered the rest are drawn at random.

delta is chosen by the paper's purity rule (§4.1): with k-means pseudo-labels (k = the number of
classes), a ball is pure when all its points share the pseudo-label of its centre; delta is the
largest radius at which at least ``purity`` (alpha = 0.95) of the balls are pure, found by
bisection, as purity only falls as delta grows. Neighbours come from scikit-learn's
``NearestNeighbors``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lplgrad.errors import ConfigError
from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, pick_order_scores
from lplgrad.strategies.embedding import last_stage_embedding


def ball_graph(points: np.ndarray, delta: float):
    """The ball graph as a sparse (N, N) 0/1 matrix: row i marks the points within ``delta`` of
    point i, itself included. points: (N, D)"""
    from sklearn.neighbors import radius_neighbors_graph

    graph = radius_neighbors_graph(points, delta, mode="connectivity", include_self=True)
    return graph.tocsr().astype(np.int32)


def purity(points: np.ndarray, pseudo: np.ndarray, delta: float) -> float:
    """The share of balls of radius ``delta`` whose points all share their centre's pseudo-label."""
    graph = ball_graph(points, delta)
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))  # the centre of every edge
    impure = np.bincount(rows[pseudo[graph.indices] != pseudo[rows]], minlength=graph.shape[0]) > 0
    return float(1.0 - impure.mean())


def choose_delta(points: np.ndarray, classes: int, alpha: float, seed: int, steps: int = 12) -> float:
    """The largest delta whose purity is at least ``alpha``, by bisection on [0, 2] (unit vectors)."""
    from sklearn.cluster import KMeans

    pseudo = KMeans(max(1, min(classes, len(points))), random_state=seed, n_init=3).fit_predict(points)
    lo, hi = 0.0, 2.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if purity(points, pseudo, mid) >= alpha else (lo, mid)
    return lo


def greedy_cover(graph, n_labeled: int, k: int, generator: torch.Generator) -> list[int]:
    """Indices among all points (the ``n_labeled`` labeled ones first) in pick order: each time the
    candidate whose ball holds the most uncovered points (ties: the smaller index)."""
    n = graph.shape[0]
    want = min(k, n - n_labeled)
    covered = np.zeros(n, dtype=bool)
    for i in range(n_labeled):
        covered[graph.indices[graph.indptr[i] : graph.indptr[i + 1]]] = True
    free = np.zeros(n, dtype=bool)
    free[n_labeled:] = True
    picks: list[int] = []
    while len(picks) < want:
        gain = np.where(free, graph @ (~covered).astype(np.int32), -1)  # (N,) uncovered points per ball
        if gain.max() <= 0:  # everything covered: the rest at random, by the round's generator
            rest = np.flatnonzero(free)
            order = torch.randperm(len(rest), generator=generator).numpy()
            picks += rest[order][: want - len(picks)].tolist()
            break
        j = int(np.argmax(gain))
        picks.append(j)
        free[j] = False
        covered[graph.indices[graph.indptr[j] : graph.indptr[j + 1]]] = True
    return picks


class ProbCover(QueryStrategy):
    """The candidates whose delta-balls cover the most uncovered embeddings (higher score = picked
    earlier; the rest score 0).

    Args:
        purity: alpha, the share of pure balls the radius keeps (0.95 in the paper).
        classes: k of the k-means pseudo-labels (None: the number of classes of M's head).
        delta: a fixed radius instead of the purity rule.
    """

    uses_labeled = True

    def __init__(self, purity: float = 0.95, classes: int | None = None, delta: float | None = None) -> None:
        if not 0 < purity <= 1:
            raise ConfigError(f"strategy purity must be in (0, 1], got {purity}")
        if delta is not None and delta <= 0:
            raise ConfigError(f"strategy delta must be positive, got {delta}")
        self.purity, self.classes, self.delta = purity, classes, delta

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        """The unit embedding and, as a last column, the number of M's classes (the default k of the
        pseudo-labels, which ``scores`` cannot read from the learner). -> (B, D + 1)"""
        emb = last_stage_embedding(learner, x)  # (B, D)
        classes = torch.full((len(emb), 1), float(learner.net.head.out_features), device=emb.device)
        return torch.cat([torch.nn.functional.normalize(emb, dim=1), classes], 1)  # (B, D + 1)

    def scores(self, measures: Tensor, ctx: ScoreContext) -> Tensor:
        cand = measures[:, :-1].double().cpu().numpy()
        lab = ctx.labeled[:, :-1].double().cpu().numpy() if ctx.labeled is not None else cand[:0]
        points = np.concatenate([lab, cand])
        classes = self.classes if self.classes is not None else int(measures[0, -1])  # M's classes
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        delta = self.delta if self.delta is not None else choose_delta(points, classes, self.purity, seed)
        picks = greedy_cover(ball_graph(points, delta), len(lab), ctx.k, ctx.generator)
        return pick_order_scores(torch.tensor(picks, dtype=torch.long) - len(lab), measures.shape[0])
