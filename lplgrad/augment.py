"""Images kept as one uint8 tensor and transformed whole batches at a time: the paper's
augmentation (zero-padded random crop, horizontal flip, normalisation) as a few tensor
operations instead of a PIL call per image.

:func:`crop_flip_normalize` gives exactly the tensors of the PIL path (:mod:`lplgrad.transforms`)
for the same crop offsets and flips (``tests/test_augment.py``). Where the offsets and flips come
from is the ``draws`` setting of :class:`TensorBatches`:

- ``"global"``: torch's global generator, one call per random choice in the order torchvision's
  RandomCrop and RandomHorizontalFlip make them. With the same shuffle this is the PIL path
  draw for draw, so a run gives bit-identical results either way (the CPU default, where the
  PIL path's time per image is the epoch's largest fixed cost);
- ``"seeded"``: an epoch's draws in two calls to a generator seeded by (seed, epoch), copied to
  the device once: no host work per image or batch (GPUs).

Either way a resumed run draws the same ones (the global state is in every checkpoint). The
device-resident design follows airbench (Keller Jordan's fast CIFAR-10 training), which keeps
CIFAR on the GPU and augments there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from lplgrad.split import epoch_shard, mix_seed


def normalize(x_u8: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """uint8 images (B, C, H, W) -> float32, as ToTensor then Normalize compute it: x / 255, then
    (x - mean) / std per channel (``mean``, ``std``: per channel, or float32 tensors already on
    the images' device, which are used as they are)."""
    x = x_u8.to(torch.float32).div(255)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return x.sub(m).div(s)


def crop_flip(x_u8: Tensor, offsets: Tensor, flips: Tensor, padding: int) -> Tensor:
    """Each image zero-padded by ``padding``, cropped back to its size at ``offsets`` (row, column
    of the top-left corner in the padded image, each in [0, 2 * padding]) and mirrored where
    ``flips``. x_u8: (B, C, H, W), offsets: (B, 2), flips: (B,) bool -> (B, C, H, W)"""
    B, C, H, W = x_u8.shape
    out = x_u8
    if padding:
        padded = torch.nn.functional.pad(x_u8, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
        rows = offsets[:, :1] + torch.arange(H, device=x_u8.device)  # (B, H)
        cols = offsets[:, 1:] + torch.arange(W, device=x_u8.device)  # (B, W)
        b = torch.arange(B, device=x_u8.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)
    # written into a fresh NCHW tensor: the strides of the PIL path's collated batches. (With one
    # channel a permuted tensor counts as contiguous but also as channels-last, and the memory
    # format decides which convolution kernels run, so it would change the results.)
    result = torch.empty((B, C, H, W), dtype=x_u8.dtype, device=x_u8.device)
    return torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out, out=result)


def crop_flip_normalize(
    x_u8: Tensor, offsets: Tensor, flips: Tensor, padding: int, mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    return normalize(crop_flip(x_u8, offsets, flips, padding), mean, std)


def draw(n: int, padding: int, flip: bool, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Crop offsets (n, 2) in [0, 2 * padding] and flips (n,) for n images, all at once."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return offsets, flips


def draw_like_torchvision(n: int, padding: int, flip: bool) -> tuple[Tensor, Tensor]:
    """The same choices from torch's global generator, image by image, as RandomCrop (two
    one-value ``randint`` calls: the row, then the column) then RandomHorizontalFlip (one ``rand``
    call) make them. The generator fills a tensor one value after the other, so the two
    consecutive ``randint`` values are drawn as one call of size 2."""
    if not flip:  # nothing between the images' draws: all of them in one call
        offsets = torch.randint(0, 2 * padding + 1, size=(n, 2)) if padding else torch.zeros(n, 2, dtype=torch.long)
        return offsets, torch.zeros(n, dtype=torch.bool)
    rows, flips = [], []
    for _ in range(n):
        if padding:
            rows.append(torch.randint(0, 2 * padding + 1, size=(2,)))
        flips.append(torch.rand(1))
    offsets = torch.stack(rows) if padding else torch.zeros(n, 2, dtype=torch.long)
    return offsets, torch.cat(flips) < 0.5


class TensorBatches:
    """Batches of ``images[indices]`` straight from a tensor: shuffled per epoch and augmented
    (``train``), or in order with the evaluation transform only. Quacks like a DataLoader for
    Lightning (``len``, iteration, ``sampler.set_epoch``).

    Args:
        images: (N, C, H, W) uint8, on the device the batches are wanted on.
        targets: (N,) labels (any device).
        indices: the rows to serve, in order.
        batch_size: rows per batch; the last batch is smaller.
        drop_last: leave out the last (smaller) batch of each epoch.
        mean, std: normalisation per channel.
        train: shuffle (by :func:`lplgrad.split.epoch_permutation`, as the PIL path) and augment.
        padding, flip: the augmentation.
        seed, epoch: what the shuffle (and the augmentation's "seeded" draws) depend on.
        draws: "global" or "seeded" (module docstring).
        rank, world: serve the ``rank::world`` share of the shuffled rows, padded by repetition
            so that every process serves as many batches (as Lightning's distributed sampler).
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        indices: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = False,
        padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        draws: str = "seeded",
        drop_last: bool = False,
    ) -> None:
        if draws not in ("global", "seeded"):
            raise ValueError(f"draws must be 'global' or 'seeded', got {draws!r}")
        self.images, self.indices = images, torch.as_tensor(indices, dtype=torch.long)
        self.targets = torch.as_tensor(targets).to(images.device)
        self.batch_size, self.mean, self.std = batch_size, tuple(mean), tuple(std)
        self.train, self.padding, self.flip = train, padding, flip
        self.seed, self.epoch, self.rank, self.world, self.draws = seed, epoch, rank, world, draws
        self.drop_last = drop_last
        # the normalisation constants, made once where the images are (not once per batch)
        self._mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        self.sampler = self  # Lightning calls dataloader.sampler.set_epoch(epoch) every epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rows(self) -> Tensor:
        if not self.train:
            return self.indices
        return epoch_shard(self.indices, self.seed, self.epoch, self.rank, self.world)

    def __len__(self) -> int:
        n = len(self.indices) if not self.train or self.world == 1 else math.ceil(len(self.indices) / self.world)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One host-to-device copy per epoch (the rows and, with seeded draws, every crop and
        flip of the epoch), none per batch: the host never waits for the device."""
        rows = self._rows()
        if self.drop_last:
            rows = rows[: len(rows) - len(rows) % self.batch_size]
        device = self.images.device
        rows_dev = rows.to(device)
        seeded = self.train and self.draws == "seeded"
        if seeded:  # the epoch's draws at once, seeded by (seed, epoch)
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 2))
            offsets_all, flips_all = (t.to(device) for t in draw(len(rows), self.padding, self.flip, g))
        for s in range(0, len(rows), self.batch_size):
            idx = rows_dev[s : s + self.batch_size]
            x = self.images[idx]
            if seeded:
                x = crop_flip(x, offsets_all[s : s + self.batch_size], flips_all[s : s + self.batch_size], self.padding)
            elif self.train:  # the PIL path's draws, image by image, from the global generator (a CPU)
                offsets, flips = draw_like_torchvision(len(idx), self.padding, self.flip)
                x = crop_flip(x, offsets.to(device), flips.to(device), self.padding)
            yield normalize(x, self._mean, self._std), self.targets[idx]
