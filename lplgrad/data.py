"""The LightningDataModule that owns the labeled / unlabeled split of an active-learning run."""
from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from lightning.pytorch.utilities import rank_zero_warn

from lplgrad.datasets import ImageDataset, Transformed
from lplgrad.errors import ConfigError, DataError


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix-style), the same on every machine."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = ((h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class EpochShuffle(Sampler[int]):
    """Shuffles by (seed, epoch) only, never from the global random stream.

    Lightning calls ``set_epoch`` every epoch. The permutation, and the loader generator that
    seeds the next iterator's workers, then depend on nothing else, so a run resumed from a
    checkpoint draws the same batches as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int, epoch: int, loader_generator: torch.Generator) -> None:
        self.n, self.seed, self.loader_generator = n, seed, loader_generator
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.loader_generator.manual_seed(_mix(self.seed, epoch, 1))

    def __iter__(self):
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch, 0))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ActiveDataModule(LightningDataModule):
    """Labeled set, unlabeled pool, the per-round candidate subset S, and their loaders.

    Args:
        dataset: the images (a class chosen by ``class_path``).
        initial_size: size of the seeded random initial labeled set.
        query_size: b, samples labelled per round.
        subset_size: S, size of the random candidate subset drawn from the pool each round.
        budget: A, the run ends once this many samples are labeled.
        batch_size: training batch size.
        eval_batch_size: batch size for the test set and for scoring candidates.
        num_workers: DataLoader worker processes.
        seed: seed of the split and of S; None uses the run's ``seed_everything`` value.
        test_size: evaluate on a fixed seeded subset of this many test images (None: all).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        initial_size: int = 1000,
        query_size: int = 1000,
        subset_size: int = 10000,
        budget: int = 10000,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int | None = None,
        test_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("initial_size", initial_size), ("query_size", query_size), ("subset_size", subset_size),
                        ("budget", budget), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if v < 1:
                raise ConfigError(f"data.{name} must be positive, got {v}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be 0 or more, got {num_workers}")
        if test_size is not None and test_size < 1:
            raise ConfigError(f"data.test_size must be positive or null, got {test_size}")
        if query_size > subset_size:
            raise ConfigError(f"data.query_size ({query_size}) is larger than data.subset_size ({subset_size}): "
                              "a round cannot pick more samples than it scores")
        if initial_size > budget:
            raise ConfigError(f"data.initial_size ({initial_size}) is larger than data.budget ({budget})")
        self.dataset = dataset
        self.initial_size, self.query_size = initial_size, query_size
        self.subset_size, self.budget = subset_size, budget
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed, self.test_size = num_workers, seed, test_size
        self.num_classes = dataset.num_classes
        self.in_channels = dataset.in_channels
        self.train_set = self.test_set = None
        self.labeled: Tensor | None = None  # (n_labeled,) in the order they were labelled
        self.labeled_round: Tensor | None = None  # (n_labeled,) the round after which each was added

    # ---- data -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.dataset.load(train=True)
            self.test_set = self.dataset.load(train=False)
            self._train_view = Transformed(self.train_set, self.dataset.train_transform())
            self._eval_view = Transformed(self.train_set, self.dataset.eval_transform())
            test = Transformed(self.test_set, self.dataset.eval_transform())
            if self.test_size is not None and self.test_size < len(test):
                g = torch.Generator().manual_seed(12345)
                test = Subset(test, torch.randperm(len(test), generator=g)[: self.test_size].sort().values.tolist())
            self._test_view = test
            self._check_labels()
            self._check_sizes()
        if self.labeled is None:
            self._initial_split()

    def _check_labels(self) -> None:
        for name, ds in (("train", self.train_set), ("test", self.test_set)):
            if len(ds) == 0:
                raise DataError(f"the {name} split of {type(self.dataset).__name__} is empty")
            if int(ds.targets.max()) >= self.num_classes or int(ds.targets.min()) < 0:
                raise DataError(f"the {name} split has labels from {int(ds.targets.min())} to {int(ds.targets.max())} "
                                f"but num_classes is {self.num_classes}")

    def _check_sizes(self) -> None:
        """Sizes that need the pool: refused, except S larger than the pool (scored whole, with a warning)."""
        pool = self.pool_size
        if self.budget > pool:
            raise ConfigError(f"data.budget ({self.budget}) is larger than the pool ({pool} training images)")
        if self.initial_size > pool:
            raise ConfigError(f"data.initial_size ({self.initial_size}) is larger than the pool ({pool})")
        if self.subset_size > pool - self.initial_size:
            rank_zero_warn(f"data.subset_size ({self.subset_size}) is larger than the unlabeled pool "
                           f"({pool - self.initial_size}): every round scores the whole unlabeled pool")

    @property
    def pool_size(self) -> int:
        return len(self.train_set)

    @property
    def target_size(self) -> int:
        """The labeled-set size at which the run ends: the budget, or the whole pool if smaller."""
        return min(self.budget, self.pool_size)

    def _seed(self) -> int:
        return self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    def generator(self, round_: int, purpose: int) -> torch.Generator:
        """A generator for ``purpose`` (0 split, 1 subset, 2 strategy) in round ``round_``: the same on every process."""
        return torch.Generator().manual_seed(self._seed() * 1_000_003 + round_ * 101 + purpose)

    def _initial_split(self) -> None:
        perm = torch.randperm(self.pool_size, generator=self.generator(0, 0))
        self.labeled = perm[: self.initial_size].clone()
        self.labeled_round = torch.full((self.initial_size,), -1, dtype=torch.long)

    # ---- the split ------------------------------------------------------------------------
    def unlabeled(self) -> Tensor:
        """Indices of the unlabeled pool, ascending. (n_unlabeled,)"""
        mask = torch.ones(self.pool_size, dtype=torch.bool)
        mask[self.labeled] = False
        return torch.nonzero(mask).flatten()

    def candidates(self, round_: int) -> Tensor:
        """The seeded random subset S of the unlabeled pool for this round (all of it if smaller)."""
        pool = self.unlabeled()
        perm = torch.randperm(len(pool), generator=self.generator(round_, 1))
        return pool[perm[: self.subset_size]].sort().values

    def next_query_size(self) -> int:
        """b, or what is left of the budget."""
        return max(0, min(self.query_size, self.target_size - len(self.labeled)))

    def add_labeled(self, indices: Tensor, round_: int) -> None:
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        if len(torch.unique(indices)) != len(indices):
            raise RuntimeError("a query returned the same index twice")
        if torch.isin(indices, self.labeled).any():
            raise RuntimeError("a query returned an index that is already labeled")
        if len(indices) and (indices.min() < 0 or indices.max() >= self.pool_size):
            raise RuntimeError("a query returned an index outside the pool")
        self.labeled = torch.cat([self.labeled, indices])
        self.labeled_round = torch.cat([self.labeled_round, torch.full_like(indices, round_)])

    def labels(self, indices: Tensor) -> Tensor:
        return self.train_set.targets[indices]

    # ---- loaders --------------------------------------------------------------------------
    def _loader(self, ds, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=False, pin_memory=False)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        gen = torch.Generator()
        sampler = EpochShuffle(len(self.labeled), self._seed(), epoch, gen)
        return DataLoader(Subset(self._train_view, self.labeled.tolist()), batch_size=self.batch_size,
                          sampler=sampler, generator=gen, num_workers=self.num_workers)

    def pool_dataloader(self, indices: Tensor) -> DataLoader:
        """Images at ``indices`` with the evaluation transform, in order."""
        return self._loader(Subset(self._eval_view, torch.as_tensor(indices).tolist()), self.eval_batch_size, False)

    def test_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """The test set, or its ``rank::world_size`` shard."""
        ds = self._test_view
        if world_size > 1:
            ds = Subset(ds, list(range(rank, len(ds), world_size)))
        return self._loader(ds, self.eval_batch_size, False)

    # ---- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"labeled": self.labeled.clone(), "labeled_round": self.labeled_round.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labeled = torch.as_tensor(state["labeled"], dtype=torch.long)
        self.labeled_round = torch.as_tensor(state["labeled_round"], dtype=torch.long)
