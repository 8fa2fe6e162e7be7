"""The labeled / unlabeled split of a pool: the one place both applications keep it.

A :class:`Split` holds which pool items are labeled (in the order they were labelled), the round
after which each was added, the seeded random streams of the run, the candidate subset S of a
round and the growth of the labeled set by a query (docs/method.md, "Querying phase").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

#: the purposes a run draws random numbers for; each number is part of the seed formula, so
#: changing one changes every run
PURPOSES = {"initial": 0, "subset": 1, "strategy": 2, "stop": 3, "fit": 4, "audit": 5}
INITIAL_ROUND = -1  # labeled_round of the initial set (or of labels given before any query)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix-style), the same on every machine."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` visits the n labeled items: depends on (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch, 0)))


def epoch_shard(indices: Tensor, seed: int, epoch: int, rank: int, world: int) -> Tensor:
    """This process's share of ``indices`` in epoch ``epoch``: shuffled by :func:`epoch_permutation`,
    padded by wrapping to a multiple of ``world``, then ``rank::world`` (every process as many)."""
    rows = indices[epoch_permutation(len(indices), seed, epoch)]
    if world > 1:
        total = math.ceil(len(rows) / world) * world
        rows = torch.cat([rows, rows[: total - len(rows)]])[rank::world]
    return rows


def round_generator(seed: int, round_: int, purpose: str) -> torch.Generator:
    """A generator for ``purpose`` in round ``round_``: the same on every process and machine."""
    return torch.Generator().manual_seed(seed * 1_000_003 + round_ * 101 + PURPOSES[purpose])


class Split:
    """Labeled indices into a pool of ``pool_size`` items, and the round each was added after.

    Args:
        pool_size: number of items in the pool (indices 0 .. pool_size - 1).
        seed: the run's seed (the initial set, every round's subset and random strategies).
        labeled: indices already labeled, in the order they were labelled (default: none).
        labeled_round: the round after which each was added (default: all INITIAL_ROUND).
        held_out: indices that are neither trained on nor queried (the labelling app's audit
            sample; default: none).
    """

    def __init__(
        self,
        pool_size: int,
        seed: int,
        labeled: Tensor | None = None,
        labeled_round: Tensor | None = None,
        held_out: Tensor | None = None,
    ) -> None:
        self.pool_size, self.seed = int(pool_size), int(seed)
        self.labeled = (
            torch.zeros(0, dtype=torch.long) if labeled is None else torch.as_tensor(labeled, dtype=torch.long)
        )
        if labeled_round is None:
            labeled_round = torch.full_like(self.labeled, INITIAL_ROUND)
        self.labeled_round = torch.as_tensor(labeled_round, dtype=torch.long)  # (n_labeled,)
        self.held_out = torch.zeros(0, dtype=torch.long) if held_out is None else torch.as_tensor(held_out).long()

    @classmethod
    def random_initial(cls, pool_size: int, size: int, seed: int) -> Split:
        """``size`` items of the pool drawn at random with the run's "initial" stream."""
        perm = torch.randperm(pool_size, generator=round_generator(seed, 0, "initial"))
        return cls(pool_size, seed, perm[:size].clone())

    def generator(self, round_: int, purpose: str) -> torch.Generator:
        return round_generator(self.seed, round_, purpose)

    def __len__(self) -> int:
        """The number of labeled items."""
        return len(self.labeled)

    def unlabeled(self) -> Tensor:
        """Indices of the unlabeled pool (neither labeled nor held out), ascending. (n_unlabeled,)"""
        mask = torch.ones(self.pool_size, dtype=torch.bool)
        mask[self.labeled] = False
        mask[self.held_out] = False
        return torch.nonzero(mask).flatten()

    def hold_out(self, indices: Tensor) -> None:
        """Take unlabeled ``indices`` out of the pool: they are neither trained on nor queried."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if torch.isin(indices, self.labeled).any() or torch.isin(indices, self.held_out).any():
            raise RuntimeError("only unlabeled images can be held out, once")
        self.held_out = torch.cat([self.held_out, indices])

    def candidates(self, round_: int, subset_size: int | None) -> Tensor:
        """The round's seeded random subset S of the unlabeled pool, ascending; the whole pool
        when ``subset_size`` is None or not smaller than it."""
        pool = self.unlabeled()
        if subset_size is None or subset_size >= len(pool):
            return pool
        perm = torch.randperm(len(pool), generator=self.generator(round_, "subset"))
        return pool[perm[:subset_size]].sort().values

    def add(self, indices: Tensor, round_: int) -> None:
        """Label ``indices`` after round ``round_``; refuses repeats, labeled and out-of-pool indices."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if len(torch.unique(indices)) != len(indices):
            raise RuntimeError("a query returned the same index twice")
        if torch.isin(indices, self.labeled).any():
            raise RuntimeError("a query returned an index that is already labeled")
        if len(indices) and (indices.min() < 0 or indices.max() >= self.pool_size):
            raise RuntimeError("a query returned an index outside the pool")
        self.labeled = torch.cat([self.labeled, indices])
        self.labeled_round = torch.cat([self.labeled_round, torch.full_like(indices, round_)])

    def state_dict(self) -> dict[str, Any]:
        return {"labeled": self.labeled.clone(), "labeled_round": self.labeled_round.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labeled = torch.as_tensor(state["labeled"], dtype=torch.long)
        self.labeled_round = torch.as_tensor(state["labeled_round"], dtype=torch.long)
