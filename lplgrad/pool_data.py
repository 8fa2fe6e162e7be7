"""What the data modules of both applications share (:class:`PoolData`): the pool, its
:class:`~lplgrad.split.Split`, the pool's training and scoring views and the loaders over them."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lplgrad.datasets import Images, Placeholders, Transformed
from lplgrad.query import QueryPool
from lplgrad.split import Split


class PoolData(LightningDataModule):
    """The split of a pool of images, the pool's views (augmented for training, plain for
    scoring) and the loaders over them. Subclasses call :meth:`set_pool` and set ``split``."""

    def __init__(self, eval_batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.eval_batch_size, self.num_workers = eval_batch_size, num_workers
        self.split: Split | None = None
        self.pool: Images | None = None

    def set_pool(self, pool: Images, train_transform, eval_transform) -> None:
        self.pool = pool
        self._train_view = Transformed(pool, train_transform)
        self._eval_view = Transformed(pool, eval_transform)

    def labels(self, indices: Tensor) -> Tensor:
        return self.pool.targets[indices]

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

    def pool_dataloader(self, indices: Tensor, images: bool = True) -> DataLoader:
        """Pool items at ``indices`` with the evaluation transform, in order; with ``images``
        false, their rows without pixels (nothing is decoded)."""
        view = self._eval_view if images else Placeholders(self.pool)
        return self.loader(Subset(view, torch.as_tensor(indices).tolist()), self.eval_batch_size)

    def query_pool(self) -> QueryPool:
        """What a query draws from: the split, the size of S and the pool's loader."""
        return QueryPool(self.split, self.subset_size, self.pool_dataloader)
