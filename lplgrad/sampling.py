"""How the labeled set is served in training: the data's seed, a shuffle by (seed, epoch) only,
and a last batch of one image dropped. Used by both applications' data modules."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

from lplgrad.split import epoch_permutation, mix_seed


def run_seed(seed: int | None) -> int:
    """``seed``, or 0 when None (the CLI links ``seed_everything`` into ``data.seed``)."""
    return seed if seed is not None else 0


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
        self.loader_generator.manual_seed(mix_seed(self.seed, epoch, 1))

    def __iter__(self):
        return iter(epoch_permutation(self.n, self.seed, self.epoch).tolist())

    def __len__(self) -> int:
        return self.n


def drop_single_last(n: int, batch_size: int) -> bool:
    """Whether a loader of ``n`` images in batches of ``batch_size`` drops its last batch: only
    when it would hold a single image, which BatchNorm cannot normalise in training (one value
    per channel on small maps). The shuffle changes which image waits each epoch, so no
    labeled image is left out for good."""
    return n > batch_size and n % batch_size == 1
