"""TypiClust (Hacohen, Dekel and Weinshall, ICML 2022): typical examples of uncovered clusters,
the cold-start strategy.

The pooled embeddings of the labeled set and the candidates are clustered with k-means into
(labeled + b) clusters (scikit-learn's KMeans, or MiniBatchKMeans above ``minibatch_above``
clusters). Each pick takes, among the clusters holding the fewest labeled (or already picked)
samples, the largest, and in it the most typical candidate: the one whose mean distance to its
``neighbours`` nearest neighbours in the cluster is smallest. Clusters smaller than ``min_size``
are passed over while larger ones remain. With a pretrained backbone this picks a batch that
covers the data's dense regions before the network has seen a label.

The typicality distances are computed where the measures live (a GPU's stay there). The k-means
step is scikit-learn's on the CPU (``clustering: sklearn``, the default, which the recorded runs
used), or lplgrad's own on the measures' device (``clustering: torch``, :mod:`lplgrad.strategies.kmeans`:
for large S on a GPU); either gives the same picks on a GPU as on a CPU.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lplgrad.errors import ConfigError
from lplgrad.strategies.base import Learner, QueryStrategy, ScoreContext, pick_order_scores
from lplgrad.strategies.embedding import last_stage_embedding
from lplgrad.strategies.kmeans import kmeans


def typicality(points: Tensor, neighbours: int) -> Tensor:
    """1 / mean distance to the ``neighbours`` nearest other points. (n, D) -> (n,)"""
    n = points.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64, device=points.device)
    k = min(neighbours, n - 1)
    d = torch.cdist(points.double(), points.double())  # (n, n)
    nearest = d.topk(k + 1, largest=False).values[:, 1:]  # without the point itself
    return 1.0 / nearest.mean(1).clamp_min(1e-12)


def cluster(points: Tensor, n_clusters: int, seed: int, minibatch_above: int, clustering: str = "sklearn") -> Tensor:
    """k-means labels of the points (scikit-learn's, or ``torch``: on the points' device). (N, D) -> (N,)"""
    if clustering == "torch":
        return kmeans(points, n_clusters, seed)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = points.double().cpu().numpy()
    algo = (
        MiniBatchKMeans(n_clusters, random_state=seed, n_init=3, batch_size=4096)
        if n_clusters > minibatch_above
        else KMeans(n_clusters, random_state=seed, n_init=3)
    )
    return torch.from_numpy(algo.fit_predict(x)).long()


def typiclust_picks(
    cand: Tensor,
    labeled: Tensor | None,
    k: int,
    seed: int,
    neighbours: int = 20,
    min_size: int = 5,
    max_clusters: int = 500,
    minibatch_above: int = 50,
    clustering: str = "sklearn",
) -> Tensor:
    """Indices into ``cand`` (N, D) in pick order. ``labeled``: (L, D) or None."""
    n_lab = 0 if labeled is None else labeled.shape[0]
    points = cand if labeled is None else torch.cat([labeled, cand])
    n_clusters = max(1, min(n_lab + k, max_clusters, points.shape[0]))
    labels = cluster(points, n_clusters, seed, minibatch_above, clustering)  # (N,) on the CPU
    covered = torch.bincount(labels[:n_lab], minlength=n_clusters)
    size = torch.bincount(labels, minlength=n_clusters)
    cand_labels = labels[n_lab:]
    free = torch.ones(cand.shape[0], dtype=torch.bool)
    picks = []
    for _ in range(min(k, cand.shape[0])):
        open_ = torch.bincount(cand_labels[free], minlength=n_clusters) > 0
        big = open_ & (size >= min_size) if (open_ & (size >= min_size)).any() else open_
        c = min(torch.nonzero(big).flatten().tolist(), key=lambda c: (int(covered[c]), -int(size[c]), c))
        members = torch.nonzero(labels == c).flatten()  # the whole cluster, labeled points included
        typ = typicality(points[members.to(points.device)], neighbours).cpu()  # (n_c,) from the device
        is_cand = (members >= n_lab) & free[(members - n_lab).clamp_min(0)]
        best = int(members[torch.argmax(typ.masked_fill(~is_cand, -1.0))]) - n_lab
        picks.append(best)
        free[best] = False
        covered[c] += 1
    return torch.tensor(picks, dtype=torch.long)


class TypiClust(QueryStrategy):
    """Most typical candidates of the largest clusters that hold no labels (higher score = picked
    earlier; the rest score 0).

    Args:
        neighbours: nearest neighbours a point's typicality is measured over.
        min_size: clusters smaller than this are passed over while larger ones remain.
        max_clusters: at most this many clusters.
        clustering: ``sklearn`` (scikit-learn's KMeans on the CPU) or ``torch`` (k-means on the
            measures' device).
    """

    uses_labeled = True

    def __init__(
        self,
        neighbours: int = 20,
        min_size: int = 5,
        max_clusters: int = 500,
        clustering: Literal["sklearn", "torch"] = "sklearn",
    ) -> None:
        if clustering not in ("sklearn", "torch"):
            raise ConfigError(f"strategy clustering must be 'sklearn' or 'torch', got {clustering!r}")
        self.neighbours, self.min_size, self.max_clusters = neighbours, min_size, max_clusters
        self.clustering = clustering

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        return last_stage_embedding(learner, x)  # (B, D)

    def scores(self, measures: Tensor, ctx: ScoreContext) -> Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        picked = typiclust_picks(
            measures,
            ctx.labeled,
            ctx.k,
            seed,
            self.neighbours,
            self.min_size,
            self.max_clusters,
            clustering=self.clustering,
        )
        return pick_order_scores(picked, measures.shape[0])
