"""The paper's benchmark datasets through torchvision: CIFAR-10/100, SVHN, Caltech-101.

torchvision downloads them where the machine is online (``download: true``); a missing dataset
that cannot be downloaded stops the run with a :class:`DatasetNotFoundError` naming where to put it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tvd

from lplgrad.datasets.base import ImageDataset, Images, stratified_split
from lplgrad.errors import DatasetNotFoundError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def _open(make: Callable[[], Dataset], name: str, root: str, how: str) -> Dataset:
    try:
        return make()
    except Exception as e:  # torchvision raises RuntimeError when absent, URLError when offline
        raise DatasetNotFoundError(f"{name} not found under {root} and not downloadable here ({e}): {how}") from e


def _how(download: bool, put: str) -> str:
    """How to get a missing dataset: ``put`` it in place, or let torchvision download it online
    (``download`` already true: only the network was missing)."""
    fetch = (
        "run where the internet is reachable (download is already true)"
        if download
        else "set download: true on a machine with internet"
    )
    return f"{fetch}, or {put}"


def _wrap(ds: Dataset, targets, mode: str, array: torch.Tensor | None = None) -> Images:
    return Images(lambda i: ds[i][0], torch.as_tensor(targets), mode, array)


class CIFAR10(ImageDataset):
    num_classes = 10
    mean, std = CIFAR_MEAN, CIFAR_STD
    _tv = tvd.CIFAR10
    _name, _folder = "CIFAR-10", "cifar-10-batches-py"
    _url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

    def __init__(self, root: str = "data/cifar", download: bool = True) -> None:
        self.root, self.download = root, download

    def load(self, train: bool) -> Images:
        how = _how(self.download, f"extract {self._url} so that {self.root}/{self._folder} exists")
        ds = _open(lambda: self._tv(self.root, train=train, download=self.download), self._name, self.root, how)
        self._classes = list(ds.classes)
        return _wrap(
            ds, ds.targets, "RGB", torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        )  # (N, 3, 32, 32)

    def class_names(self) -> list[str]:
        return getattr(self, "_classes", None) or super().class_names()


class CIFAR100(CIFAR10):
    num_classes = 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    _tv = tvd.CIFAR100
    _name, _folder = "CIFAR-100", "cifar-100-python"
    _url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


class SVHN(ImageDataset):
    """SVHN train split as the pool (no "extra" split, as in the paper), test split for accuracy.

    Digits are not mirror-symmetric, so the default augmentation is the random crop only.
    """

    num_classes = 10
    mean, std = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

    def __init__(self, root: str = "data/svhn", download: bool = True, flip: bool = False) -> None:
        self.root, self.download, self.flip = root, download, flip

    def load(self, train: bool) -> Images:
        split = "train" if train else "test"
        how = _how(self.download, f"put {split}_32x32.mat from http://ufldl.stanford.edu/housenumbers/ in {self.root}")
        ds = _open(lambda: tvd.SVHN(self.root, split=split, download=self.download), "SVHN", self.root, how)
        return _wrap(ds, ds.labels, "RGB", torch.from_numpy(ds.data))  # (N, 3, 32, 32)


class Caltech101(ImageDataset):
    """Caltech-101 (101 object categories, background excluded), resized to ``image_size``.

    torchvision gives one set of 8,677 images; a seeded stratified split holds out
    ``test_fraction`` of each class (0.33 gives the paper's ~5,800 train / ~2,877 test).
    """

    num_classes = 101
    mean, std = (0.5452, 0.5287, 0.5013), (0.3111, 0.3072, 0.3194)
    resize = True

    def __init__(
        self,
        root: str = "data/caltech101",
        download: bool = True,
        image_size: int = 32,
        test_fraction: float = 0.33,
        split_seed: int = 0,
    ) -> None:
        self.root, self.download = root, download
        self.image_size, self.padding = image_size, max(1, image_size // 8)
        self.test_fraction, self.split_seed = test_fraction, split_seed

    def load(self, train: bool) -> Images:
        how = _how(
            self.download,
            f"extract caltech-101 so that {self.root}/caltech101/101_ObjectCategories/<class>/*.jpg exists",
        )
        ds = _open(
            lambda: tvd.Caltech101(self.root, target_type="category", download=self.download),
            "Caltech-101",
            self.root,
            how,
        )
        self._classes = list(ds.categories)
        targets = torch.as_tensor(ds.y)
        tr, te = stratified_split(targets, self.test_fraction, self.split_seed)
        keep = tr if train else te
        return Images(lambda i: ds[int(keep[i])][0], targets[keep], "RGB")

    def class_names(self) -> list[str]:
        return getattr(self, "_classes", None) or super().class_names()
