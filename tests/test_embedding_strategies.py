"""BADGE, TypiClust and the switch from one to the other, on hand-built cases."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lplgrad.query import score_and_select
from lplgrad.strategies import BADGE, Coreset, QueryStrategy, ScoreContext, SwitchAt, TypiClust
from lplgrad.strategies.badge import gradient_factors, kmeans_pp, sq_dist_to
from lplgrad.strategies.typiclust import typicality, typiclust_picks


def test_factorised_distances_equal_the_materialised_embeddings():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(30, 6, generator=g).double(), 1)
    h = torch.randn(30, 11, generator=g).double()
    u = gradient_factors(probs)
    assert torch.allclose(u.sum(1), torch.zeros(30, dtype=u.dtype), atol=1e-12)  # p - e_yhat sums to 0
    emb = (u[:, :, None] * h[:, None, :]).reshape(30, -1)  # the C x D gradient embeddings, materialised here only
    sq = u.pow(2).sum(1) * h.pow(2).sum(1)
    assert torch.allclose(sq, emb.pow(2).sum(1))
    for j in (0, 7, 29):
        assert torch.allclose(sq_dist_to(u, h, sq, j), (emb - emb[j]).pow(2).sum(1), atol=1e-9)


def test_kmeans_pp_takes_the_largest_first_and_then_the_far_group():
    # two groups of identical embeddings: once one member of a group is picked, its twins are at
    # distance 0 and cannot be drawn; the second pick must come from the other group
    probs = torch.tensor([[0.9, 0.1]] * 3 + [[0.2, 0.8]] * 4, dtype=torch.double)
    h = torch.tensor([[3.0, 0.0]] * 3 + [[0.0, 1.0]] * 4, dtype=torch.double)
    picks = kmeans_pp(gradient_factors(probs), h, 2, torch.Generator().manual_seed(0))
    sq = gradient_factors(probs).pow(2).sum(1) * h.pow(2).sum(1)
    assert int(picks[0]) == int(torch.argmax(sq)) == 0 and int(picks[1]) in (3, 4, 5, 6)
    again = kmeans_pp(gradient_factors(probs), h, 7, torch.Generator().manual_seed(5))
    assert sorted(again.tolist()) == list(range(7))  # every point once, ties included


class Linear2(nn.Module):
    """A network whose classifier input is the input itself: BADGE's h is x."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 3)

    @property
    def head(self):
        return self.linear

    def forward(self, x):
        return self.linear(x), [x[:, :, None, None]]


def test_badge_measures_and_selects_through_the_query_path():
    learner = nn.Module()
    learner.net = Linear2()
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(1))
    strategy = BADGE()
    probs, h = strategy.measure(learner, x)  # no state kept: what scores needs is in the measures
    assert probs.shape == (20, 3) and torch.allclose(h, x) and torch.allclose(probs.sum(1), torch.ones(20))
    ctx = ScoreContext(0, 0, 4, torch.Generator().manual_seed(2))
    selected, scores = score_and_select(strategy, torch.arange(100, 120), (probs, h), ctx)
    assert len(set(selected.tolist())) == 4 and (scores > 0).sum() == 4


def blob(centre, n, radius=0.3):
    """A centre point and n - 1 points on a circle around it: the centre is the most typical."""
    angles = torch.arange(n - 1, dtype=torch.double) * (2 * torch.pi / (n - 1))
    ring = torch.stack([torch.cos(angles), torch.sin(angles)], 1) * radius
    return torch.cat([torch.zeros(1, 2, dtype=torch.double), ring]) + torch.tensor(centre, dtype=torch.double)


@pytest.mark.parametrize("clustering", ["sklearn", "torch"])
def test_typiclust_picks_the_centres_of_the_largest_uncovered_clusters(clustering):
    a, b, c = blob([0, 0], 30), blob([10, 0], 20), blob([0, 10], 10)
    labeled = a[1:2]  # cluster a is covered
    cand = torch.cat([a[2:], b, c])  # b's centre is at 28, c's at 48
    picks = typiclust_picks(cand, labeled, 2, seed=0, min_size=5, clustering=clustering)
    assert picks.tolist() == [28, 48]  # b (20 points) before c (10), each at its centre
    cold = typiclust_picks(cand, None, 3, seed=0, clustering=clustering)  # nothing labeled: a, then b, then c
    assert cold.tolist()[1:] == [28, 48] and typicality(a, 20).argmax() == 0


def test_typiclust_scores_through_the_strategy():
    a, b = blob([0, 0], 12), blob([5, 5], 12)
    scores = TypiClust(min_size=2).scores(
        torch.cat([a, b]).float(), ScoreContext(0, 0, 2, torch.Generator().manual_seed(0))
    )
    assert sorted(torch.nonzero(scores).flatten().tolist()) == [0, 12]


def test_switch_uses_the_first_strategy_below_the_size_then_the_second():
    class Fixed(QueryStrategy):
        uses_labeled, requires_aux = False, False

        def __init__(self, value):
            self.value = value

        def measure(self, learner, x):
            return torch.full((len(x),), self.value)

        def scores(self, measures, ctx):
            return measures + torch.arange(len(measures)) * self.value

    s = SwitchAt(Fixed(1.0), Fixed(-1.0), labeled=3)
    assert not s.uses_labeled  # the labeled set's size comes with the context: it is not measured
    m = s.measure(None, torch.zeros(4, 1))
    assert [t.tolist() for t in m] == [[1.0] * 4, [-1.0] * 4]
    at = [ScoreContext(0, n, 1, torch.Generator()) for n in (2, 3)]
    assert s.scores(m, at[0]).tolist() == [1.0, 2.0, 3.0, 4.0]  # 2 labeled: first
    assert s.scores(m, at[1]).tolist() == [-1.0, -2.0, -3.0, -4.0]  # 3 labeled: second


def test_switch_passes_the_labeled_measures_of_the_strategy_it_uses():
    s = SwitchAt(TypiClust(min_size=2), Coreset(), labeled=3)
    assert s.uses_labeled
    feats = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    cand, lab = s.measure(SimpleNamespace(net=Linear2()), feats), (feats[:3], feats[:3])
    direct = Coreset().scores(feats, ScoreContext(1, 3, 2, torch.Generator(), feats[:3]))
    assert s.scores(cand, ScoreContext(1, 3, 2, torch.Generator(), lab)).tolist() == direct.tolist()


def test_torch_kmeans_finds_separated_groups_and_takes_the_best_seeding():
    from lplgrad.strategies.kmeans import kmeans, lloyd, sq_distances

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    x = torch.cat([c + 0.5 * torch.randn(25, 2, generator=g) for c in centres])  # (100, 2), 4 groups of 25
    labels = kmeans(x, 4, seed=3)
    groups = [set(labels[i * 25 : (i + 1) * 25].tolist()) for i in range(4)]
    assert all(len(s) == 1 for s in groups) and len(set.union(*groups)) == 4  # each group one cluster
    assert torch.equal(kmeans(x, 4, seed=3), labels)  # seeded: the same clusters again
    assert torch.equal(kmeans(x.float(), 4, seed=3), labels)  # computed in float64 either way
    # Lloyd's iterations never raise the inertia: from a poor start (all centres in one group)
    xd = x.double()
    sq = xd.pow(2).sum(1)
    start = xd[:4]
    _, inertia = lloyd(xd, sq, start, 100)
    assert inertia <= float(sq_distances(xd, sq, start).min(1).values.sum())


def test_switch_fits_the_part_that_trains():
    from lplgrad.strategies import VAAL, Random

    s = SwitchAt(Random(), VAAL(width=4), labeled=3)
    assert s.trains and not SwitchAt(Random(), Coreset(), 3).trains
