"""The experiment's data module (:class:`ActiveDataModule`): a dataset with a test split, a
random initial set, a budget, and the loaders of training, scoring and evaluation. What it
shares with the labeling app's data module is :class:`~lplgrad.pool_data.PoolData`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lplgrad.augment import TensorBatches
from lplgrad.budget import Budget
from lplgrad.datasets import ImageDataset, Transformed, check_labels
from lplgrad.errors import ConfigError
from lplgrad.feature_cache import RowBatches, dataset_identity
from lplgrad.loader_kind import LoaderKind, place_arrays
from lplgrad.pool_data import PoolData, UnlabeledPartners, WithoutLabels
from lplgrad.sampling import EpochShuffle, drop_single_last, run_seed
from lplgrad.split import Split


#: the seed of the ``test_size`` subset of the test set: fixed, not the run's seed, so that every
#: seed of a comparison is evaluated on the same images (paired differences compare like with like)
TEST_SUBSET_SEED = 12345


class ActiveDataModule(PoolData):
    """Labeled set, unlabeled pool, the per-round candidate subset S, and their loaders.

    Args:
        dataset: the images (a class chosen by ``class_path``).
        initial_size: size of the seeded random initial labeled set.
        query_size: b, samples labelled per round.
        subset_size: S, size of the random candidate subset drawn from the pool each round.
        budget: A, the run ends once this many samples are labeled.
        batch_size: training batch size.
        eval_batch_size: batch size for the test set and for scoring candidates.
        num_workers: DataLoader worker processes (persistent within a round).
        seed: seed of the split and of S; linked from ``seed_everything`` (not an option of its
            own); None (``seed_everything: false``, or a module built outside the CLI): 0.
        test_size: evaluate on a fixed seeded subset of this many test images (None: all).
        in_memory: train from the images as one uint8 tensor, augmenting whole batches
            (:mod:`lplgrad.augment`), for datasets stored as one array (Fashion-MNIST,
            CIFAR-10/100, SVHN, digits). On a GPU every split is kept on the device and the
            augmentation's draws are seeded per epoch; on a CPU the training images are cropped
            and flipped as tensors with draws from the global generator in the PIL path's order,
            which gives bit-identical results, and scoring and testing stay on the PIL path.
            None (auto): on a GPU when the splits fit in a quarter of its free memory, on a CPU
            when ``num_workers`` is 0; false: the PIL transforms for everything.
        on_device: the on-device path whatever the device (needs a dataset held as one array):
            seeded draws, and scoring and testing from the tensors, as on a GPU. On a CPU this
            runs the GPU's data path (to test it); its results differ from the PIL path's.
        image_size, mean, std: what the backbone's weights expect, when it differs from the
            dataset's own (e.g. 224 and ImageNet's statistics for ImageNet weights): images are
            resized to ``image_size`` and normalised with ``mean``/``std``.
        feature_cache: compute the frozen part of M (``trainable_stages``) once per pool and test
            image, then train, query and evaluate on those rows, without augmentation
            (docs/features.md; the CLI links it to ``model.feature_cache``).
        feature_dir: where the rows are kept (None: ``features/`` of the run folder).
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
        in_memory: bool | None = None,
        on_device: bool = False,
        image_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        feature_cache: bool = False,
        feature_dir: str | None = None,
    ) -> None:
        self.sizes = Budget(initial_size, query_size, subset_size, budget)
        for name, v in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if v < 1:
                raise ConfigError(f"data.{name} must be positive, got {v}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be 0 or more, got {num_workers}")
        if on_device and in_memory is False:
            raise ConfigError("data.on_device needs the images in memory: leave data.in_memory unset or true")
        if test_size is not None and test_size < 1:
            raise ConfigError(f"data.test_size must be positive or null, got {test_size}")
        super().__init__(eval_batch_size, num_workers, feature_cache, feature_dir)
        dataset.set_input(image_size, mean, std)
        self.dataset = dataset
        self.initial_size, self.query_size = initial_size, query_size
        self.subset_size, self.budget = subset_size, budget
        self.batch_size, self.seed, self.test_size, self.in_memory = batch_size, seed, test_size, in_memory
        self.on_device = on_device
        self.arrays: tuple[torch.Tensor, torch.Tensor] | None = None  # (pool, test) uint8 on the device, or None
        self.kind = LoaderKind.PIL  # chosen in setup
        self.num_classes = dataset.num_classes
        self.in_channels = dataset.in_channels
        self.test_set = None
        self._restored: dict[str, Any] | None = None

    # ---- data -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.pool is None:
            self.set_pool(self.dataset.load(train=True), self.dataset.train_transform(), self.dataset.eval_transform())
            self.test_set = self.dataset.load(train=False)
            test = Transformed(self.test_set, self.dataset.eval_transform())
            if self.test_size is not None and self.test_size < len(test):
                g = torch.Generator().manual_seed(TEST_SUBSET_SEED)
                test = Subset(test, torch.randperm(len(test), generator=g)[: self.test_size].sort().values.tolist())
            self._test_view = test
            self._test_rows = torch.as_tensor(test.indices) if isinstance(test, Subset) else torch.arange(len(test))
            for name, ds in (("train", self.pool), ("test", self.test_set)):
                check_labels(ds, self.num_classes, f"the {name} split of {type(self.dataset).__name__}")
            self._check_sizes()
            self.kind, self.arrays = place_arrays(
                self.in_memory, self.on_device, self.dataset, self.pool, self.test_set, self.device(), self.num_workers
            )
        if self.split is None:
            self.split = Split.random_initial(self.pool_size, self.initial_size, run_seed(self.seed))
            if self._restored is not None:
                self.split.load_state_dict(self._restored)

    def _check_sizes(self) -> None:
        """Sizes that need the pool: refused, except S larger than the pool (scored whole, with a warning)."""
        pool = self.pool_size
        if self.sizes.check_pool(pool):
            rank_zero_warn(
                f"data.subset_size ({self.subset_size}) is larger than the unlabeled pool "
                f"({pool - self.initial_size}): every round scores the whole unlabeled pool"
            )

    @property
    def draws(self) -> str:
        """The tensor path's augmentation draws ("global" on a CPU: the PIL path's stream)."""
        return self.kind.draws

    @property
    def evaluates_on_device(self) -> bool:
        """Scoring and testing read the device tensors too (GPUs); on a CPU they stay on the PIL
        path, whose loaders draw from the global stream as they always did."""
        return self.arrays is not None and self.kind.evaluates_on_device

    @property
    def pool_size(self) -> int:
        return len(self.pool)

    @property
    def target_size(self) -> int:
        """The labeled-set size at which the run ends: the budget, or the whole pool if smaller."""
        return self.sizes.target(self.pool_size)

    def next_query_size(self) -> int:
        """b, or what is left of the budget."""
        return self.sizes.next_query(len(self.split), self.pool_size)

    def rounds_left(self) -> int:
        """The rounds still to train, this one included."""
        return self.sizes.rounds_left(len(self.split), self.pool_size)

    # ---- loaders --------------------------------------------------------------------------
    def train_dataloader(self):
        """The labeled set's training batches; paired with as many unlabeled images when the
        learner trains on them too (:meth:`PoolData.pair_unlabeled`)."""
        labeled = self._train_loader(self.split.labeled)
        if not self.learner_trains_on_unlabeled():
            return labeled
        trainer, n = self.trainer, len(self.split.labeled)
        rank, world = trainer.global_rank, trainer.world_size
        partners = UnlabeledPartners(
            self.split.unlabeled(),
            n,
            run_seed(self.seed),
            trainer.current_epoch,
            rank,
            world,
            self.batch_size,
            drop_single_last(math.ceil(n / world), self.batch_size),
            lambda rows, epoch: self._train_loader(rows, False, epoch, sharded=True),
        )
        return self.pair_unlabeled(labeled, partners)

    def _train_loader(
        self, rows: Tensor, labels: bool = True, epoch: int | None = None, sharded: bool = False
    ) -> DataLoader | TensorBatches:
        """Training batches of the pool images at ``rows``, shuffled by (seed, epoch) and
        augmented. ``labels`` false: every label is -1 (unlabeled images); ``sharded``: the rows
        are this process's share already (they are served in the order given)."""
        trainer = self.trainer
        if epoch is None:
            epoch = trainer.current_epoch if trainer is not None else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if sharded:
            rank, world = 0, 1
        per_process = math.ceil(len(rows) / world)  # a distributed sampler pads every share to this
        if per_process < 2:
            raise ConfigError(
                f"{len(rows)} labeled images over {world} process(es) leave a training batch of "
                "one image, which BatchNorm cannot train on: label at least 2 per process "
                "(data.initial_size)"
            )
        drop_last = drop_single_last(per_process, self.batch_size)
        if self.features:  # the cached rows, shuffled by the same permutation as the PIL path
            order = {"order": "in_order"} if sharded else dict(order="epoch", seed=run_seed(self.seed), epoch=epoch)
            return self.row_batches(rows, labels, self.batch_size, rank=rank, world=world, drop_last=drop_last, **order)
        if self.arrays is not None:  # shuffled by the same permutation as the PIL path
            return TensorBatches(
                self.arrays[0],
                self.pool.targets if labels else torch.full((self.pool_size,), -1),
                rows,
                self.batch_size,
                self.dataset.mean,
                self.dataset.std,
                train=True,
                padding=self.dataset.padding,
                flip=self.dataset.flip,
                seed=run_seed(self.seed),
                epoch=epoch,
                rank=rank,
                world=world,
                draws=self.draws,
                drop_last=drop_last,
            )
        view = self._train_view if labels else WithoutLabels(self._train_view)
        if sharded:  # a fresh loader every epoch, in the order drawn (Lightning leaves it unsharded)
            return self.loader(Subset(view, rows.tolist()), self.batch_size, drop_last=drop_last)
        gen = torch.Generator()
        sampler = EpochShuffle(len(rows), run_seed(self.seed), epoch, gen)
        return self.loader(
            Subset(view, rows.tolist()),
            self.batch_size,
            persistent=True,
            sampler=sampler,
            generator=gen,
            drop_last=drop_last,
        )

    def image_loader(self, indices: Tensor, images: bool = True) -> DataLoader | TensorBatches:
        if self.evaluates_on_device:
            return TensorBatches(
                self.arrays[0], self.pool.targets, indices, self.eval_batch_size, self.dataset.mean, self.dataset.std
            )
        return super().image_loader(indices, images)

    def feature_splits(self) -> dict[str, tuple[int, Callable[[], Iterable], str]]:
        """The pool and the whole test split (``test_size`` evaluates a fixed part of it)."""
        ds, pool, test, every = self.dataset, self.pool, self.test_set, torch.arange(len(self.test_set))

        def test_images() -> DataLoader | TensorBatches:
            if self.evaluates_on_device:
                return TensorBatches(self.arrays[1], test.targets, every, self.eval_batch_size, ds.mean, ds.std)
            return self.loader(Transformed(test, ds.eval_transform()), self.eval_batch_size)

        return {
            "pool": (len(pool), lambda: self.image_loader(torch.arange(len(pool))), dataset_identity(ds, pool, "pool")),
            "test": (len(test), test_images, dataset_identity(ds, test, "test")),
        }

    @property
    def test_view(self) -> Dataset:
        """The test set as the evaluation sees it: (image, label) with the evaluation transform."""
        return self._test_view

    def evaluation_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader | TensorBatches:
        """The test set, or this process's ``rank::world_size`` shard of it (the rounds loop
        evaluates each round on it; not Lightning's ``test_dataloader`` hook: there is no
        ``Trainer.test`` stage)."""
        if self.features:
            rows = self._test_rows[rank::world_size]
            return RowBatches(self.features["test"], self.test_set.targets, rows, self.eval_batch_size)
        if self.evaluates_on_device:
            return TensorBatches(
                self.arrays[1],
                self.test_set.targets,
                self._test_rows[rank::world_size],
                self.eval_batch_size,
                self.dataset.mean,
                self.dataset.std,
            )
        ds = self._test_view
        if world_size > 1:
            ds = Subset(ds, list(range(rank, len(ds), world_size)))
        return self.loader(ds, self.eval_batch_size)

    # ---- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.split.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state  # before setup the pool size is not known yet: applied there
        if self.split is not None:
            self.split.load_state_dict(state)
