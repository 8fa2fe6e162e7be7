"""Property-based invariants of the labeled/unlabeled split over whole simulated experiments."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lplgrad.data import ActiveDataModule
from lplgrad.datasets import ImageDataset, Images
from lplgrad.errors import ConfigError
from lplgrad.strategies import select_top


class Blank(ImageDataset):
    num_classes = 3
    in_channels = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def load(self, train: bool) -> Images:
        n = self.n if train else 5
        return Images(lambda i: Image.new("L", (4, 4)), torch.arange(n) % 3, "L")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=st.integers(2, 300), data=st.data())
def test_split_invariants_over_a_whole_experiment(pool, data):
    budget = data.draw(st.integers(1, pool))
    initial = data.draw(st.integers(1, budget))
    b = data.draw(st.integers(1, pool))
    subset = data.draw(st.integers(b, pool + 20))
    seed = data.draw(st.integers(0, 10))
    dm = ActiveDataModule(Blank(pool), initial_size=initial, query_size=b, subset_size=subset, budget=budget, seed=seed)
    dm.setup("fit")
    assert len(dm.split.labeled) == initial
    seen: set[int] = set(dm.split.labeled.tolist())
    round_ = 0
    while (k := dm.next_query_size()) > 0:
        before = len(dm.split.labeled)
        unlabeled = set(dm.split.unlabeled().tolist())
        cands = dm.split.candidates(round_, dm.subset_size)
        assert set(cands.tolist()) <= unlabeled  # candidates only from the unlabeled pool
        assert len(cands) == min(subset, len(unlabeled))
        scores = torch.rand(len(cands), generator=torch.Generator().manual_seed(round_))
        picked = select_top(cands, scores, k)
        assert not set(picked.tolist()) & seen  # never queried twice
        dm.split.add(picked, round_)
        seen |= set(picked.tolist())
        assert len(dm.split.labeled) - before == min(b, budget - before)  # b, or what is left of the budget
        labeled, rest = set(dm.split.labeled.tolist()), set(dm.split.unlabeled().tolist())
        assert not labeled & rest and len(labeled) + len(rest) == pool  # disjoint, and cover the pool
        round_ += 1
    assert len(dm.split.labeled) == min(budget, pool) == len(set(dm.split.labeled.tolist()))


def test_subset_larger_than_pool_scores_the_whole_pool_with_a_warning():
    dm = ActiveDataModule(Blank(30), initial_size=5, query_size=5, subset_size=100, budget=20)
    with pytest.warns(UserWarning, match="whole unlabeled pool"):
        dm.setup("fit")
    assert len(dm.split.candidates(0, dm.subset_size)) == 25


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(budget=50), "budget"),
        (dict(initial_size=40, budget=40), "larger than the pool"),  # initial <= budget, so the budget check speaks
    ],
)
def test_sizes_that_need_the_pool_are_refused(kwargs, match):
    args = dict(initial_size=5, query_size=5, subset_size=10, budget=20) | kwargs
    with pytest.raises(ConfigError, match=match):
        ActiveDataModule(Blank(30), **args).setup("fit")
