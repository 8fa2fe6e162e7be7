"""What the data modules of both applications share (:class:`PoolData`): the pool, its
:class:`~lplgrad.split.Split`, the pool's training and scoring views and the loaders over them,
and the feature cache (:meth:`PoolData.cache_features`: every loader then serves cached rows)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lplgrad.datasets import Images, Placeholders, Transformed
from lplgrad.feature_cache import CacheKey, RowBatches, as_feature_cut, fill_rows, frozen_part_digest, open_store
from lplgrad.feature_cache import text_digest
from lplgrad.inference import input_dtype
from lplgrad.query import QueryPool
from lplgrad.split import Split, mix_seed


class WithoutLabels(Dataset):
    """A view's images with -1 for every label: what a learner that trains on unlabeled images
    receives of them (their labels are never read)."""

    def __init__(self, view: Dataset) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int):
        return self.view[i][0], -1


def unlabeled_partners(unlabeled: Tensor, n: int, seed: int, epoch: int) -> Tensor:
    """n pool indices of unlabeled images to pair with the n labeled ones of an epoch: a random
    draw without repetition (repeated only when fewer than n are unlabeled), seeded by (seed,
    epoch) alone, so that a resumed run draws the same. unlabeled (U,) -> (n,)"""
    if len(unlabeled) == 0:
        raise ValueError("no unlabeled image is left to pair with the labeled ones")
    g = torch.Generator().manual_seed(mix_seed(seed, epoch, 3))
    rounds = -(-n // len(unlabeled))
    order = torch.cat([torch.randperm(len(unlabeled), generator=g) for _ in range(rounds)])[:n]
    return unlabeled[order]


class UnlabeledPartners:
    """An epoch's batches of unlabeled images, as many as the labeled set's (this process's share
    of them). Like the labeled set's loader, it takes the epoch from ``sampler.set_epoch`` and
    reads it at its first batch, not when its iterator is made: Lightning may make the epoch's
    iterator before it sets the epoch (it does in the first epoch after a resume), so an
    uninterrupted and a resumed run pair the same images.

    Args:
        unlabeled: the unlabeled pool indices; n: the labeled set's size.
        seed, epoch: what the draw depends on (:func:`unlabeled_partners`).
        rank, world: this process's ``rank::world`` share, padded by repetition as the labeled
            set's distributed sampler pads it.
        batch_size, drop_last: as the labeled loader's.
        make_loader: (pool indices, epoch) -> the batches of those images, augmented, labels -1.
    """

    def __init__(
        self,
        unlabeled: Tensor,
        n: int,
        seed: int,
        epoch: int,
        rank: int,
        world: int,
        batch_size: int,
        drop_last: bool,
        make_loader: Callable[[Tensor, int], Iterable],
    ) -> None:
        self.unlabeled, self.n, self.seed, self.epoch = unlabeled, n, seed, epoch
        self.rank, self.world, self.batch_size, self.drop_last = rank, world, batch_size, drop_last
        self.make_loader = make_loader
        self.sampler = self  # Lightning calls dataloader.sampler.set_epoch(epoch) every epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rows(self, epoch: int) -> Tensor:
        """Epoch ``epoch``'s images for this process. -> (ceil(n / world),)"""
        rows = unlabeled_partners(self.unlabeled, self.n, self.seed, epoch)
        if self.world > 1:
            total = math.ceil(len(rows) / self.world) * self.world
            rows = torch.cat([rows, rows[: total - len(rows)]])[self.rank :: self.world]
        return rows

    def __len__(self) -> int:
        share = math.ceil(self.n / self.world)
        return share // self.batch_size if self.drop_last else math.ceil(share / self.batch_size)

    def __iter__(self) -> Iterator:
        epoch = self.epoch  # read at the first batch: this is a generator
        yield from self.make_loader(self.rows(epoch), epoch)


class PoolData(LightningDataModule):
    """The split of a pool of images, the pool's views (augmented for training, plain for
    scoring) and the loaders over them. Subclasses call :meth:`set_pool` and set ``split``.

    ``feature_cache``: once :meth:`cache_features` has run, every loader serves each image's
    cached row of frozen features instead of the image (no augmentation); ``feature_dir``: where
    the rows are kept (None: the application's own folder, or memory)."""

    def __init__(
        self, eval_batch_size: int, num_workers: int, feature_cache: bool = False, feature_dir: str | None = None
    ) -> None:
        super().__init__()
        self.eval_batch_size, self.num_workers = eval_batch_size, num_workers
        self.feature_cache, self.feature_dir = feature_cache, feature_dir
        self.features: dict[str, Tensor] = {}  # split name -> every image's cached row (N, width)
        self.split: Split | None = None
        self.pool: Images | None = None

    def set_pool(self, pool: Images, train_transform, eval_transform) -> None:
        self.pool = pool
        self._train_view = Transformed(pool, train_transform)
        self._eval_view = Transformed(pool, eval_transform)

    def labels(self, indices: Tensor) -> Tensor:
        return self.pool.targets[indices]

    def learner_trains_on_unlabeled(self) -> bool:
        """Whether the trainer's learner asks for unlabeled images beside every labeled batch
        (its ``trains_on_unlabeled`` flag: WAAL's critic)."""
        trainer = self.trainer
        return trainer is not None and bool(getattr(trainer.lightning_module, "trains_on_unlabeled", False))

    def labeled_ratio(self) -> float:
        """|L| / |U| of the split (WAAL's weight of the labeled term)."""
        return len(self.split) / max(1, len(self.split.unlabeled()))

    @staticmethod
    def pair_unlabeled(labeled, unlabeled) -> CombinedLoader:
        """Training batches of {"labeled": (x, y), "unlabeled": (x_u, -1s)}, the two loaders of
        equally many batches iterated together (Lightning's CombinedLoader: each keeps its own
        sampler, and a distributed run shards both)."""
        return CombinedLoader({"labeled": labeled, "unlabeled": unlabeled}, mode="min_size")

    def device(self) -> torch.device:
        """The device the trainer runs on (the CPU before a trainer is attached)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def loader(
        self,
        ds: Dataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        persistent: bool = False,
        **kw,
    ) -> DataLoader:
        """A DataLoader with the module's workers; ``persistent`` keeps them between epochs (the
        training loader), and memory is pinned when the trainer runs on CUDA."""
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=drop_last,
            persistent_workers=persistent and self.num_workers > 0,
            pin_memory=self.device().type == "cuda",
            **kw,
        )

    def pool_dataloader(self, indices: Tensor, images: bool = True) -> DataLoader | RowBatches:
        """Pool items at ``indices`` with the evaluation transform, in order (their cached rows,
        with the feature cache); with ``images`` false, their rows without pixels (nothing is decoded)."""
        if self.features:
            return RowBatches(self.features["pool"], self.pool.targets, indices, self.eval_batch_size)
        return self.image_loader(indices, images)

    def image_loader(self, indices: Tensor, images: bool = True) -> DataLoader:
        """The images of :meth:`pool_dataloader`, whether or not features are cached."""
        view = self._eval_view if images else Placeholders(self.pool)
        return self.loader(Subset(view, torch.as_tensor(indices).tolist()), self.eval_batch_size)

    def row_batches(self, indices: Tensor, labels: bool, batch_size: int, **order) -> RowBatches:
        """Training batches of the cached rows at pool ``indices`` (labels false: every label -1)."""
        return RowBatches(self.features["pool"], self.pool.targets if labels else None, indices, batch_size, **order)

    # ---- the feature cache ----------------------------------------------------------------
    def feature_splits(self) -> dict[str, tuple[int, Callable[[], Iterable], str]]:
        """The splits whose rows are cached: name -> (number of images, their batches in order
        with the evaluation transform, a digest of which images they are: what the rows are keyed by)."""
        raise NotImplementedError

    def cache_features(
        self,
        net: torch.nn.Module,
        device: torch.device,
        folder: Path | None = None,
        rank: int = 0,
        barrier: Callable[[], None] | None = None,
    ) -> list[str]:
        """Compute, or read from ``folder``, every image's row of frozen features (``net``: a
        :class:`~lplgrad.nets.cut.FeatureCut`, on ``device`` afterwards); from then on the loaders
        serve rows. Under several processes rank 0 computes and the others read its files
        (``barrier``: the trainer's). Returns the lines to print: the cut, and per split whether
        its rows were read or computed, and why."""
        cut = as_feature_cut(net).to(device)
        self.setup()
        probe = next(iter(self.image_loader(torch.arange(min(len(self.pool), 4)))))[0]
        plan = cut.prepare(probe.to(device, dtype=input_dtype(cut)))
        frozen, transform = frozen_part_digest(cut), text_digest(repr(self._eval_view.transform))
        shared = folder is not None and barrier is not None
        if shared and rank != 0:  # rank 0 writes the files first
            barrier()
        lines = [f"Feature cache: {type(cut.backbone).__name__} {plan.describe()}"]
        for name, (n, batches, images) in self.feature_splits().items():
            key = CacheKey(images, frozen, transform)
            store = open_store(folder, name, key, n, plan.width, lambda out: fill_rows(cut, batches(), device, out))
            self.features[name] = store.rows
            lines.append(f"Feature cache ({name}): {store.line}")
        if shared and rank == 0:
            barrier()
        return lines

    def query_pool(self) -> QueryPool:
        """What a query draws from: the split, the size of S and the pool's loader."""
        return QueryPool(self.split, self.subset_size, self.pool_dataloader)
