"""Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 real 28x28 grayscale images, 10 classes.

Read from the four original IDX files, found (gzipped or not) in ``root``, ``root/FashionMNIST/raw``
or Debian's ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist); downloaded by
torchvision when none is found and ``download`` is set. ``classes`` keeps a subset of the ten
classes, relabelled 0 .. k-1 (the transfer study pretrains on 0-4 and labels 5-9).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lplgrad.datasets.base import ImageDataset, Images
from lplgrad.errors import DataError, DatasetNotFoundError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, got {arr.size}")
    return arr.reshape(shape)


class FashionMNIST(ImageDataset):
    num_classes = 10
    in_channels = 1
    mean = (0.2860,)
    std = (0.3530,)
    image_size = 28

    def __init__(
        self,
        root: str = "data/fashion_mnist",
        download: bool = True,
        flip: bool = True,
        classes: list[int] | None = None,
    ) -> None:
        self.root = root
        self.download = download
        self.flip = flip
        if classes is not None and (len(set(classes)) != len(classes) or not set(classes) <= set(range(10))):
            raise DataError(f"data.dataset.init_args.classes must be distinct labels 0-9, got {classes}")
        self.classes = list(classes) if classes is not None else None
        self.num_classes = len(self.classes) if self.classes is not None else 10

    def class_names(self) -> list[str]:
        return [CLASSES[c] for c in self.classes] if self.classes is not None else list(CLASSES)

    def _find(self, stem: str) -> Path | None:
        for d in (Path(self.root), Path(self.root) / "FashionMNIST" / "raw", Path(DEBIAN_DIR)):
            for name in (stem, stem + ".gz"):
                if (d / name).is_file():
                    return d / name
        return None

    def load(self, train: bool) -> Images:
        prefix = "train" if train else "t10k"
        stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        paths = [self._find(s) for s in stems]
        if None in paths and self.download:
            try:
                from torchvision.datasets import FashionMNIST as TV

                TV(self.root, train=train, download=True)
            except Exception as e:  # offline: say how to get it
                raise DatasetNotFoundError(self._missing(f"download failed: {e}")) from e
            paths = [self._find(s) for s in stems]
        if None in paths:
            raise DatasetNotFoundError(self._missing("not found"))
        images = torch.from_numpy(read_idx(paths[0]).copy())  # (N, 28, 28) uint8
        labels = torch.from_numpy(read_idx(paths[1]).astype(np.int64))  # (N,)
        if len(images) != len(labels):
            raise ValueError(f"{paths[0]} and {paths[1]} hold {len(images)} images but {len(labels)} labels")
        if self.classes is not None:  # those classes only, relabelled 0 .. k-1 in the order given
            keep = torch.isin(labels, torch.tensor(self.classes))
            relabel = torch.full((10,), -1, dtype=torch.long)
            relabel[torch.tensor(self.classes)] = torch.arange(len(self.classes))
            images, labels = images[keep].contiguous(), relabel[labels[keep]]
        return Images(lambda i: Image.fromarray(images[i].numpy()), labels, "L", array=images.unsqueeze(1))

    def _missing(self, why: str) -> str:
        return (
            f"Fashion-MNIST {why} under {self.root} or {DEBIAN_DIR}: install it with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or run once with internet"
            + ("" if self.download else " and data.dataset.init_args.download=true")
            + f", or put the four *-ubyte(.gz) files in {self.root}"
        )
