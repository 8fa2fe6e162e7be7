"""k-means on the points' device (Lloyd's iterations after k-means++ seeding, Arthur and
Vassilvitskii 2007), for TypiClust's ``clustering: torch``.

scikit-learn's KMeans runs on the CPU only; this one runs where the measures are (a GPU's stay
there). Its random draws (the seeding) are made on the CPU from a generator seeded by ``seed``,
from the same float32 weights whatever the device, so a GPU and a CPU cluster alike (up to
floating-point rounding of the distances, float64 here). Memory: the points and one (N, K)
distance matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.strategies.coreset import sq_distances


def kmeans_pp_seeds(x: Tensor, sq: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability proportional
    to the squared distance to the nearest centre chosen. (N, D) -> (k,) row indices."""
    n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    picked = [first]
    nearest = sq_distances(x, sq, x[first : first + 1]).squeeze(1)  # (N,)
    for _ in range(1, k):
        weights = nearest.float().cpu()
        if float(weights.sum()) <= 0.0:  # every point coincides with a centre: any unpicked one
            weights = torch.ones(n)
            weights[picked] = 0.0
        j = int(torch.multinomial(weights, 1, generator=generator))
        picked.append(j)
        nearest = torch.minimum(nearest, sq_distances(x, sq, x[j : j + 1]).squeeze(1))
    return torch.tensor(picked, dtype=torch.long)


def lloyd(x: Tensor, sq: Tensor, centres: Tensor, iterations: int) -> tuple[Tensor, float]:
    """Lloyd's iterations from ``centres`` (K, D) until no label changes. -> (labels (N,), inertia)"""
    d = sq_distances(x, sq, centres)  # (N, K), to the current centres
    labels = d.argmin(1)  # (N,)
    for _ in range(iterations):
        counts = torch.bincount(labels, minlength=centres.shape[0]).to(x.dtype)  # (K,)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)  # (K, D)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)  # empty: kept
        d = sq_distances(x, sq, centres)
        new = d.argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, float(d.gather(1, labels[:, None]).sum())


def kmeans(points: Tensor, n_clusters: int, seed: int, n_init: int = 3, iterations: int = 100) -> Tensor:
    """Cluster labels of the points, the best of ``n_init`` seedings by inertia. (N, D) -> (N,) on the CPU"""
    x = points.double()
    sq = x.pow(2).sum(1)  # (N,)
    k = max(1, min(n_clusters, x.shape[0]))
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        seeds = kmeans_pp_seeds(x, sq, k, generator).to(x.device)
        labels, inertia = lloyd(x, sq, x[seeds], iterations)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best.cpu()
