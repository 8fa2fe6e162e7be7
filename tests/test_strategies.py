"""Every query strategy ranks hand-built cases whose right order is known."""

import math

import pytest
import torch
from torch import nn

from lplgrad.query import score_and_select
from lplgrad.strategies import (
    Coreset,
    EntGradNorm,
    Entropy,
    LearningLoss,
    LeastConfidence,
    LPLgrad,
    Margin,
    Random,
    ScoreContext,
    k_center_greedy,
    select_top,
)


class FakeNet:
    """Takes its input as the logits; the one "stage feature map" is the input as (B, D, 1, 1)."""

    def __call__(self, x):
        return x, [x[:, :, None, None]]


class FakeLearner:
    """A :class:`lplgrad.strategies.Learner`: ``.net(x)`` -> (logits, [features]) and ``.loss_head(features)``.

    The loss head "predicts" the first feature of each sample as its loss."""

    def __init__(self):
        self.net = FakeNet()
        self.loss_head = lambda feats: feats[-1][:, 0, 0, 0].clone()


def logits_of(probs):
    """Logits whose softmax is ``probs`` (rows of probabilities, zeros allowed)."""
    return torch.tensor(probs, dtype=torch.float64).clamp_min(1e-30).log()


def pick(strategy, x, k, indices=None, labeled=None, seed=0):
    """Measure, score and select like the rounds loop does: (selected, scores)."""
    learner = FakeLearner()
    meas = strategy.measure(learner, x)
    lab = strategy.measure(learner, labeled) if labeled is not None else None
    idx = torch.arange(len(x)) if indices is None else indices
    return score_and_select(strategy, idx, meas, context(k, lab, seed))


def context(k, labeled=None, seed=0, n_labeled=None):
    """The score context of round 0 with ``k`` to select."""
    n = n_labeled if n_labeled is not None else (0 if labeled is None else len(labeled))
    return ScoreContext(0, n, k, torch.Generator().manual_seed(seed), labeled)


def hand_entropy(p):
    return -sum(q * math.log(q) for q in p if q > 0)


# ---- uncertainty sampling ------------------------------------------------------------------------
PEAKED = [0.97, 0.01, 0.01, 0.01]
MILD = [0.55, 0.25, 0.1, 0.1]
UNIFORM = [0.25, 0.25, 0.25, 0.25]


@pytest.mark.parametrize("strategy", [Entropy(), Margin(), LeastConfidence()])
def test_uniform_before_mild_before_peaked(strategy):
    x = logits_of([PEAKED, UNIFORM, MILD])
    selected, scores = pick(strategy, x, 3)
    assert selected.tolist() == [1, 2, 0]
    assert pick(strategy, x, 1)[0].tolist() == [1]
    assert scores[1] > scores[2] > scores[0]


def test_entropy_values_by_hand():
    rows = [PEAKED, UNIFORM, MILD]
    got = Entropy().measure(FakeLearner(), logits_of(rows))
    assert got.tolist() == pytest.approx([hand_entropy(p) for p in rows], rel=1e-6)
    assert got[1].item() == pytest.approx(math.log(4), rel=1e-6)  # the maximum


def test_margin_and_least_confidence_values_by_hand():
    rows = [PEAKED, UNIFORM, MILD]
    x = logits_of(rows)
    margin = Margin().measure(FakeLearner(), x)
    lc = LeastConfidence().measure(FakeLearner(), x)
    assert margin.tolist() == pytest.approx([-(0.97 - 0.01), 0.0, -(0.55 - 0.25)], abs=1e-6)
    assert lc.tolist() == pytest.approx([0.03, 0.75, 0.45], abs=1e-6)


def test_the_three_criteria_disagree_where_they_should():
    # A: a tie between two classes (margin 0) but low entropy and top probability 0.5;
    # B: spread over four classes: top-2 gap 0.2, top probability 0.4, higher entropy.
    a, b = [0.5, 0.5, 0.0, 0.0], [0.4, 0.2, 0.2, 0.2]
    assert hand_entropy(b) > hand_entropy(a)
    x = logits_of([a, b])
    assert pick(Margin(), x, 1)[0].tolist() == [0]  # smallest gap
    assert pick(Entropy(), x, 1)[0].tolist() == [1]  # largest entropy
    assert pick(LeastConfidence(), x, 1)[0].tolist() == [1]  # lowest top probability (0.4 < 0.5)


def test_uncertainty_selection_maps_back_to_pool_indices():
    x = logits_of([PEAKED, UNIFORM, MILD, PEAKED])
    pool = torch.tensor([3, 17, 40, 41])  # candidates are pool indices, ascending
    selected, _ = pick(Entropy(), x, 2, indices=pool)
    assert selected.tolist() == [17, 40]


# ---- LearningLoss ------------------------------------------------------------------------------
def test_learning_loss_picks_largest_predicted_loss():
    assert LearningLoss.requires_aux
    predicted = torch.tensor([0.3, 2.5, -1.0, 1.7, 0.9])
    x = torch.stack([predicted, torch.zeros(5), torch.ones(5)], dim=1)  # the fake head reads column 0
    selected, scores = pick(LearningLoss(), x, 3)
    assert scores.tolist() == pytest.approx(predicted.tolist())
    assert selected.tolist() == [1, 3, 4]


# ---- entropy gradient norm (LPLgrad, Ent-GradNorm) ---------------------------------------------
class LinearNet(nn.Module):
    """logits = W x + b with W's third column zero: adding e3 to x changes ||x||, not the logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3).double()
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        z = self.fc(x)
        return z, [z[:, :, None, None]]


@pytest.mark.parametrize("cls", [LPLgrad, EntGradNorm])
@pytest.mark.parametrize("norm", ["per_tensor", "global"])
def test_gradnorm_ranks_by_a_hand_computed_gradient(cls, norm):
    # dH/dz_k = -p_k (log p_k + H); the weight gradient is (dH/dz) x^T, the bias gradient dH/dz,
    # so per_tensor = |g| (|x| + 1) and global = |g| sqrt(|x|^2 + 1).
    learner = FakeLearner()
    learner.net = LinearNet().eval()
    x = torch.tensor([[2.0, 0, 0], [2.0, 0, 5.0], [0.0, 0, 0], [1.0, -1.0, 3.0]], dtype=torch.float64)
    scores = cls(norm=norm).measure(learner, x)

    def by_hand(xi):
        z = torch.tensor([xi[0], xi[1], 0.0], dtype=torch.float64)
        p = torch.softmax(z, 0)
        h = -(p * p.log()).sum()
        g = (-p * (p.log() + h)).norm().item()
        n = xi.norm().item()
        return g * (n + 1) if norm == "per_tensor" else g * math.sqrt(n * n + 1)

    assert scores.tolist() == pytest.approx([by_hand(xi) for xi in x], rel=1e-5, abs=1e-7)
    assert scores[2].item() == pytest.approx(0.0, abs=1e-7)  # uniform output: H at its maximum, zero gradient
    assert scores[1] > scores[0]  # same logits, longer input
    selected, _ = score_and_select(cls(norm=norm), torch.arange(4), scores, context(4))
    assert selected.tolist() == sorted(range(4), key=lambda i: -by_hand(x[i]))
    assert selected[-1].item() == 2


# ---- Coreset -----------------------------------------------------------------------------------
def brute_force_k_center(points, centres, k):
    """Greedy k-center from the full distance matrix: the point farthest from its nearest centre
    (initial centres and picked points), ties to the smaller index; no centres: the first point."""
    pts = points.double()
    everything = torch.cat([centres.double(), pts])
    dist = ((everything[:, None, :] - pts[None, :, :]) ** 2).sum(-1)  # (M + N, N), squared
    m = centres.shape[0]
    active = list(range(m))
    picked = []
    for _ in range(min(k, len(pts))):
        if not active:
            j = 0
        else:
            nearest = [min(dist[c, i].item() for c in active) for i in range(len(pts))]
            best = max(nearest[i] for i in range(len(pts)) if i not in picked)
            j = min(i for i in range(len(pts)) if i not in picked and nearest[i] == best)
        picked.append(j)
        active.append(m + j)
    return picked


def test_k_center_picks_farthest_point_first():
    points = torch.tensor([[1.0], [5.0], [3.0], [10.0], [-2.0]])
    centres = torch.tensor([[0.0]])
    assert k_center_greedy(points, centres, 1).tolist() == [3]  # 10 is farthest from 0
    # then the point farthest from {0, 10}: 5 (distance 5), then 3 or -2 (both at 2): the smaller index
    assert k_center_greedy(points, centres, 3).tolist() == [3, 1, 2]
    assert k_center_greedy(points, torch.zeros(0, 1), 2).tolist() == [0, 3]  # no centres: first point, then farthest


@pytest.mark.parametrize("lookahead", [1, 2, 5, 256])  # small: picks cross block boundaries
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_centres", [0, 1, 4])
def test_k_center_equals_brute_force(seed, n_centres, lookahead):
    g = torch.Generator().manual_seed(seed)
    n, d = int(torch.randint(3, 15, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
    points = torch.randn(n, d, generator=g)
    centres = torch.randn(n_centres, d, generator=g)
    k = int(torch.randint(1, n + 2, (1,), generator=g))  # sometimes more than n
    assert k_center_greedy(points, centres, k, lookahead=lookahead).tolist() == brute_force_k_center(points, centres, k)


@pytest.mark.parametrize("lookahead", [1, 3, 256])
@pytest.mark.parametrize("seed", range(6))
def test_k_center_equals_brute_force_with_ties(seed, lookahead):
    g = torch.Generator().manual_seed(100 + seed)
    points = torch.randint(-2, 3, (10, 2), generator=g).double()  # small integers: exact ties, duplicates
    centres = torch.randint(-2, 3, (2, 2), generator=g).double()
    for c in (centres, centres[:0]):
        assert k_center_greedy(points, c, 10, lookahead=lookahead).tolist() == brute_force_k_center(points, c, 10)


def test_k_center_blocks_pick_as_one_product_per_pick():
    """On larger random features the block version makes exactly the plain version's picks."""
    g = torch.Generator().manual_seed(3)
    points, centres = torch.randn(3000, 64, generator=g).abs(), torch.randn(200, 64, generator=g).abs()
    sq = points.pow(2).sum(1)
    nearest = torch.cdist(points, centres).pow(2).min(1).values
    plain = []
    for _ in range(150):
        j = int(torch.argmax(nearest))
        plain.append(j)
        nearest = torch.minimum(nearest, (sq + sq[j] - 2.0 * (points @ points[j])).clamp_min(0))
        nearest[j] = -1.0
    for lookahead in (16, 256):
        assert k_center_greedy(points, centres, 150, lookahead=lookahead).tolist() == plain


def test_k_center_small_blocks_change_nothing():
    g = torch.Generator().manual_seed(7)
    points, centres = torch.randn(20, 3, generator=g), torch.randn(9, 3, generator=g)
    assert k_center_greedy(points, centres, 6, block=2).tolist() == k_center_greedy(points, centres, 6).tolist()


def test_coreset_scores_and_select_top_give_the_greedy_set():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 4, generator=g)
    labeled = torch.randn(5, 4, generator=g)
    pool = torch.sort(torch.randperm(100, generator=g)[:12]).values  # candidate pool indices
    strategy = Coreset()
    assert strategy.uses_labeled
    measures = strategy.measure(FakeLearner(), feats)
    assert torch.allclose(measures, feats)  # the pooled features of the fake net are its input
    for k in (1, 4, 12):
        scores = strategy.scores(measures, context(k, strategy.measure(FakeLearner(), labeled)))
        greedy = brute_force_k_center(feats, labeled, k)
        assert select_top(pool, scores, k).tolist() == pool[greedy].tolist()  # same set, greedy order
    selected, _ = pick(Coreset(), feats, 4, indices=pool, labeled=labeled)
    assert selected.tolist() == pool[brute_force_k_center(feats, labeled, 4)].tolist()


# ---- Random ------------------------------------------------------------------------------------
def test_random_is_reproducible_per_seed_and_differs_across_seeds():
    x = torch.randn(200, 3)
    pool = torch.arange(1000, 1200)
    a, _ = pick(Random(), x, 20, indices=pool, seed=5)
    b, _ = pick(Random(), x, 20, indices=pool, seed=5)
    c, _ = pick(Random(), x, 20, indices=pool, seed=6)
    assert a.tolist() == b.tolist()
    assert set(a.tolist()) != set(c.tolist())
    assert len(set(a.tolist())) == 20 and set(a.tolist()) <= set(pool.tolist())
    assert Random().measure(FakeLearner(), x).tolist() == [0.0] * 200


def test_random_ignores_the_samples():
    # the selection depends on the seed only, not on what the candidates look like
    a, _ = pick(Random(), torch.randn(50, 3), 5, seed=1)
    b, _ = pick(Random(), torch.randn(50, 3) * 100, 5, seed=1)
    assert a.tolist() == b.tolist()


# ---- select_top --------------------------------------------------------------------------------
def test_select_top_breaks_ties_by_smaller_index():
    idx = torch.tensor([5, 2, 9, 1])
    assert select_top(idx, torch.ones(4), 2).tolist() == [1, 2]
    assert select_top(idx, torch.ones(4), 4).tolist() == [1, 2, 5, 9]
    assert select_top(torch.tensor([7, 3, 1, 0]), torch.tensor([1.0, 2.0, 2.0, 0.0]), 3).tolist() == [1, 3, 7]
    assert select_top(idx, torch.tensor([0.5, 0.1, 0.9, 0.2]), 10).tolist() == [9, 5, 1, 2]  # k > N: all
