"""An image folder with train/ and test/ subfolders of one folder per class (e.g. CDD)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from lplgrad.datasets.base import MAX_PIXELS, ImageDataset, Images, check_pixels
from lplgrad.errors import DataError, DatasetNotFoundError


def _readable(path: Path, max_pixels: int | None) -> bool:
    try:
        with Image.open(path) as img:
            check_pixels(img, max_pixels)
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - PIL raises many kinds on a broken file: it is skipped
        return False


def _classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolder(ImageDataset):
    """``root/<train_dir>/<class>/*.png`` is the pool, ``root/<test_dir>/<class>/*`` the test set.

    Images are resized to ``image_size`` (the Comprehensive Disaster Dataset is 32x32, 6 classes).
    ``num_classes`` is the number of class folders in the train split. ``verify`` checks every
    image before the run starts; images of more than ``max_pixels`` pixels are refused, never
    decoded (None: no limit).
    """

    resize = True

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        test_dir: str = "test",
        image_size: int = 32,
        grayscale: bool = False,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        flip: bool = True,
        verify: bool = True,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.root, self.train_dir, self.test_dir, self.verify = root, train_dir, test_dir, verify
        self.max_pixels = max_pixels
        self.image_size, self.padding, self.flip = image_size, max(1, image_size // 8), flip
        self.in_channels = 1 if grayscale else 3
        self.mean = tuple(mean) if mean else (0.5,) * self.in_channels
        self.std = tuple(std) if std else (0.5,) * self.in_channels
        train = Path(root) / train_dir
        if not train.is_dir() or not _classes(train):
            raise DatasetNotFoundError(
                f"no class folders in {train}: put the images as {train}/<class>/<image> and "
                f"{Path(root) / test_dir}/<class>/<image>"
            )
        self._classes = _classes(train)
        self.num_classes = len(self._classes)
        if self.num_classes < 2:
            raise DataError(
                f"{train} has {self.num_classes} class folder ({self._classes[0]}): a classifier needs at least 2"
            )

    def class_names(self) -> list[str]:
        return list(self._classes)

    def load(self, train: bool) -> Images:
        split = Path(self.root) / (self.train_dir if train else self.test_dir)
        if not split.is_dir():
            raise DatasetNotFoundError(f"{split} does not exist: put the images as {split}/<class>/<image>")
        unknown = sorted(set(_classes(split)) - set(self._classes))
        if unknown:
            raise DataError(f"{split} has classes that {self.train_dir}/ lacks: {unknown}")
        files, labels = [], []
        for c, name in enumerate(self._classes):
            d = split / name
            if not d.is_dir():
                continue
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
                    files.append(p)
                    labels.append(c)
        if not files:
            raise DatasetNotFoundError(f"{split} holds no images ({', '.join(IMG_EXTENSIONS)})")
        if self.verify:
            bad = [f for f in files if not _readable(f, self.max_pixels)]
            if bad:
                shown = ", ".join(str(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                raise DataError(
                    f"{len(bad)} unreadable or corrupt image(s) (or larger than "
                    f"data.dataset.init_args.max_pixels) in {split}: {shown} "
                    "(remove or replace them, or set data.dataset.init_args.verify false to skip this check)"
                )
        mode = "L" if self.in_channels == 1 else "RGB"

        def image(i: int) -> Image.Image:
            with Image.open(files[i]) as img:
                try:
                    check_pixels(img, self.max_pixels)
                except ValueError as e:
                    raise DataError(f"{files[i]}: {e}") from None
                return img.convert(mode)

        ds = Images(image, torch.tensor(labels), mode)
        ds.files = files
        return ds
