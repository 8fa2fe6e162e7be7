"""What a dataset is to lplgrad: a train split (the pool), a test split and their transforms."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from lplgrad.errors import DataError
from lplgrad.transforms import eval_transform, train_transform


class Images(Dataset):
    """Images with integer labels; ``targets`` holds every label as a tensor (N,).

    ``image(i)`` returns the i-th image as a PIL image in ``mode`` ("RGB" or "L"). ``array``, when
    the dataset has one, holds every image as one uint8 tensor (N, C, H, W) with the same pixels
    (what :mod:`lplgrad.augment` transforms whole batches of).
    """

    def __init__(
        self, image: Callable[[int], Image.Image], targets: Tensor, mode: str, array: Tensor | None = None
    ) -> None:
        self._image = image
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.mode = mode
        self.array = array

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, i: int) -> Image.Image:
        """The i-th image alone, in ``mode``; its label is not read (what pretraining reads)."""
        img = self._image(int(i))
        return img if img.mode == self.mode else img.convert(self.mode)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self.image(i), int(self.targets[i])


class Transformed(Dataset):
    """A view of a dataset with a transform applied to its images."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img, y = self.base[i]
        return self.transform(img), y


class Placeholders(Dataset):
    """A dataset's rows without their pixels: (an empty tensor, the label). What the loader of a
    strategy that needs no images yields, so that nothing is decoded."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return torch.zeros(0), int(self.base.targets[i])


class ImageDataset(ABC):
    """A labeled image-classification dataset, chosen in the config by ``class_path``.

    Subclasses set ``num_classes``, ``in_channels``, ``mean``, ``std`` and implement :meth:`load`.
    The transforms are :mod:`lplgrad.transforms`' (the paper's augmentation: random crop with
    padding, random horizontal flip if ``flip``, normalisation; evaluation only resizes where
    ``resize`` is set, and normalises).
    """

    num_classes: int
    in_channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_size: int = 32
    padding: int = 4
    flip: bool = True
    resize: bool = False

    @abstractmethod
    def load(self, train: bool) -> Images:
        """The train (pool) or test split, untransformed."""

    def class_names(self) -> list[str]:
        return [str(i) for i in range(self.num_classes)]

    def set_input(
        self, image_size: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ) -> None:
        """What a backbone's weights expect: images resized to ``image_size`` (crop padding 1/8 of
        it), normalised with ``mean``/``std`` (e.g. ImageNet's for ImageNet weights)."""
        if image_size is not None and image_size != self.image_size:
            self.image_size, self.resize, self.padding = image_size, True, max(1, image_size // 8)
        if mean is not None:
            self.mean = tuple(mean)
        if std is not None:
            self.std = tuple(std)

    def train_transform(self) -> Callable:
        return train_transform(self.image_size, self.padding, self.flip, self.mean, self.std, self.resize)

    def eval_transform(self) -> Callable:
        return eval_transform(self.image_size, self.mean, self.std, self.resize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def stratified_split(targets: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per-class seeded split of indices into (train, test), each sorted."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(targets):
        idx = torch.nonzero(targets == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


#: images with more pixels than this (after a JPEG's reduced-scale decoding) are not decoded
MAX_PIXELS = 40_000_000


def check_pixels(img: Image.Image, max_pixels: int | None) -> None:
    """Refuse, before decoding, an image larger than ``max_pixels``: a small file can hold a huge
    image (a 17 KB 1-bit PNG of 12000 x 12000 pixels decodes to 0.4 GB as RGB)."""
    w, h = img.size
    if max_pixels is not None and w * h > max_pixels:
        raise ValueError(f"{w}x{h} pixels, more than data.max_pixels ({max_pixels:,}): not decoded")


def check_labels(split: Images, num_classes: int, what: str) -> None:
    """Stop with one line when a loaded split is empty or has a label outside 0..num_classes-1
    (``what`` names it: "the train split of FashionMNIST")."""
    if len(split) == 0:
        raise DataError(f"{what} is empty")
    low, high = int(split.targets.min()), int(split.targets.max())
    if high >= num_classes or low < 0:
        raise DataError(f"{what} has labels from {low} to {high} but num_classes is {num_classes}")
