"""ProbCover: the greedy cover against brute force, the purity rule for the radius, and the
strategy through its interface."""

import itertools

import numpy as np
import pytest
import torch

from lplgrad.errors import ConfigError
from lplgrad.strategies import ProbCover
from lplgrad.strategies.probcover import ball_graph, choose_delta, greedy_cover, purity

from test_strategies import context


def covered_by(points, delta, chosen):
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return int((d[list(chosen)] <= delta).any(0).sum()) if chosen else 0


def brute_greedy(points, delta, n_labeled, k):
    """Greedy by recomputing the coverage of every set from scratch (ties: the smaller index)."""
    chosen = list(range(n_labeled))
    picks = []
    for _ in range(k):
        best = max(
            (i for i in range(n_labeled, len(points)) if i not in picks),
            key=lambda i: (covered_by(points, delta, chosen + [i]), -i),
        )
        picks.append(best)
        chosen.append(best)
    return picks


@pytest.mark.parametrize("seed,n_labeled", [(0, 0), (1, 3), (2, 5)])
def test_greedy_cover_equals_brute_force(seed, n_labeled):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(30, 2))
    delta, k = 0.6, 5
    got = greedy_cover(ball_graph(points, delta), n_labeled, k, torch.Generator())
    assert got == brute_greedy(points, delta, n_labeled, k)


def test_greedy_cover_is_optimal_on_a_tiny_case_where_it_can_be():
    # three clusters of different sizes: the cover of size 3 that covers everything takes one of each
    points = np.array([[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1], [5, 5], [5.1, 5], [9, 0]], dtype=float)
    picks = greedy_cover(ball_graph(points, 0.5), 0, 3, torch.Generator())
    best = max(itertools.combinations(range(7), 3), key=lambda c: covered_by(points, 0.5, list(c)))
    assert covered_by(points, 0.5, picks) == covered_by(points, 0.5, list(best)) == 7
    assert picks[0] in (0, 1, 2, 3) and picks[1] in (4, 5) and picks[2] == 6  # the largest ball first


def test_when_everything_is_covered_the_rest_are_drawn_at_random():
    points = np.zeros((6, 2))  # one ball covers all
    a = greedy_cover(ball_graph(points, 0.1), 0, 4, torch.Generator().manual_seed(0))
    b = greedy_cover(ball_graph(points, 0.1), 0, 4, torch.Generator().manual_seed(0))
    assert a == b and a[0] == 0 and len(set(a)) == 4


def test_purity_and_the_radius_it_chooses():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.05, size=(40, 2)) for c in ([1, 0], [0, 1], [-1, 0])])
    points = blobs / np.linalg.norm(blobs, axis=1, keepdims=True)
    pseudo = np.repeat([0, 1, 2], 40)
    assert purity(points, pseudo, 0.01) == 1.0 and purity(points, pseudo, 2.0) == 0.0
    delta = choose_delta(points, 3, 0.95, seed=0)
    assert 0.1 < delta < 1.5  # balls as large as the blobs, not larger than their gaps
    assert purity(points, pseudo, delta) >= 0.95


def test_the_strategy_picks_one_point_per_blob_and_avoids_the_labeled_one():
    rng = np.random.default_rng(1)
    centres = np.eye(4)[:, :4] * 3
    emb = torch.tensor(np.concatenate([rng.normal(c, 0.05, size=(10, 4)) for c in centres]), dtype=torch.float32)
    cls = torch.full((40, 1), 4.0)
    meas = torch.cat([torch.nn.functional.normalize(emb, dim=1), cls], 1)
    labeled = meas[:1]  # blob 0 already has a label
    scores = ProbCover().scores(meas, context(3, labeled))
    top = torch.topk(scores, 3).indices
    assert sorted((top // 10).tolist()) == [1, 2, 3]


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="purity"):
        ProbCover(purity=0)
    with pytest.raises(ConfigError, match="delta"):
        ProbCover(delta=-1.0)
