"""Random images written in the on-disk formats of the real datasets (CIFAR-10/100 pickles, SVHN
.mat files, Caltech-101 and image-folder JPEG/PNG trees), for tests and for benchmarks that must
not download anything. Sizes are parameters: a handful of images for a test, the full 50,000 of
CIFAR-10 for ``benchmarks/protocol_cost.py``."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng, n, h, w, c):
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 12, seed: int = 0) -> None:
    """cifar-10-batches-py/: data_batch_1..5, test_batch (``per_batch`` images each; the real
    files hold 10,000), batches.meta (pickled dicts)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = _images(rng, per_batch, 32, 32, 3).transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        with open(d / name, "wb") as f:
            pickle.dump({"data": x, "labels": rng.integers(0, 10, per_batch).tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    """cifar-100-python/: train, test, meta (pickled dicts with fine labels)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, 32, 32, 3).transpose(0, 3, 1, 2).reshape(n, 3072)
        with open(d / name, "wb") as f:
            pickle.dump(
                {
                    "data": x,
                    "fine_labels": rng.integers(0, 100, n).tolist(),
                    "coarse_labels": rng.integers(0, 20, n).tolist(),
                },
                f,
            )
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)


def write_svhn(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    """train_32x32.mat / test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 is digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n, 32, 32, 3).transpose(1, 2, 3, 0)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})


def write_caltech101(root: Path, per_class: int = 3, seed: int = 0) -> None:
    """caltech101/101_ObjectCategories/<category>/image_NNNN.jpg, BACKGROUND_Google included."""
    rng = np.random.default_rng(seed)
    base = root / "caltech101" / "101_ObjectCategories"
    for c in ["BACKGROUND_Google"] + [f"category_{i:03d}" for i in range(101)]:
        (base / c).mkdir(parents=True, exist_ok=True)
        for j in range(1, per_class + 1):
            h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
            mode_gray = j == 1 and c.endswith("7")  # some Caltech images are grayscale
            arr = _images(rng, 1, h, w, 1 if mode_gray else 3)[0]
            Image.fromarray(arr.squeeze(-1) if mode_gray else arr).save(base / c / f"image_{j:04d}.jpg")


def write_image_folder(root: Path, classes: int = 6, per_class: int = 6, size: int = 32, seed: int = 0) -> None:
    """train/<class>/*.png and test/<class>/*.png."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", max(1, per_class // 2))):
        for c in range(classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                Image.fromarray(_images(rng, 1, size, size, 3)[0]).save(d / f"{j}.png")


@contextmanager
def checksums_skipped() -> Iterator[None]:
    """Inside the block torchvision accepts these files: it checks CIFAR's and SVHN's files
    against the MD5 sums of the real ones, which random images cannot match."""
    from torchvision.datasets import cifar, svhn

    saved = cifar.check_integrity, svhn.check_integrity
    cifar.check_integrity = svhn.check_integrity = lambda *a, **k: True
    try:
        yield
    finally:
        cifar.check_integrity, svhn.check_integrity = saved
