"""The unlabelled images that pretraining learns from: a dataset config's training split (the
pool of an active-learning run) or an image folder (the labelling app's), as pairs of views.

No label is ever read: a dataset's images are taken with :meth:`lplgrad.datasets.Images.image`
(never ``targets``), and a folder is scanned and decoded as the labelling app does
(:func:`lplgrad.labeling.scan.scan_folder`, :func:`~lplgrad.labeling.scan.open_image`), with no
labels file at all. ``tests/test_pretrain.py`` runs a pretraining on a dataset whose labels
raise when touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lightning.pytorch import LightningDataModule
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lplgrad.datasets.base import MAX_PIXELS, ImageDataset
from lplgrad.errors import ConfigError, DataError
from lplgrad.labeling.scan import open_image, scan_folder
from lplgrad.pretrain.views import METHODS, check_view_options, two_views

#: the backbone's classifier is built with this many outputs for a folder, which has no classes;
#: the head is not trained, and an active-learning run replaces it (its ``weights`` skip it)
FOLDER_HEAD = 2


class UnlabelledImages(Dataset):
    """``n`` images read by ``image(i)``; item i is its two views ``(x0, x1)`` and nothing else."""

    def __init__(self, image: Callable[[int], Image.Image], n: int, views: Callable[[Image.Image], list[Tensor]]):
        self.image, self.n, self.views = image, n, views

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x0, x1 = self.views(self.image(int(i)))
        return x0, x1


class PretrainData(LightningDataModule):
    """The images of ``dataset`` (its training split) or of ``folder``, in batches of view pairs.

    Args:
        dataset: a dataset of lplgrad.datasets, as in an active-learning config's ``data.dataset``
            (class_path and init_args). Its size, mean and std are the run's unless given below.
        folder: an image folder instead (any depth; unreadable files are skipped and counted).
        image_size: the views' size (default: the dataset's; 32 for a folder, as
            configs/label_folder.yaml).
        grayscale: a folder's images in one channel instead of RGB.
        mean, std: the views' normalisation (default: the dataset's; 0.5 per channel for a folder,
            as the labelling app): use those of the active-learning run that will load the weights.
        batch_size: images per step (each gives two views); the last partial batch is dropped.
        num_workers: data-loader processes that decode and augment (0: in the training process).
        method: simclr or byol, linked from ``model.method`` (which views to make).
        min_scale, cj_strength, gaussian_blur, hf_prob: the views (:func:`two_views`).
        scan_cache: a file remembering which of a folder's images decode (as the labelling app's).
        max_pixels: a folder's images larger than this are skipped, never decoded (None: no limit).
    """

    def __init__(
        self,
        dataset: ImageDataset | None = None,
        folder: str | None = None,
        image_size: int | None = None,
        grayscale: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        method: str = "simclr",
        min_scale: float = 0.08,
        cj_strength: float = 0.5,
        gaussian_blur: float = 0.0,
        hf_prob: float = 0.5,
        scan_cache: str | None = None,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        super().__init__()
        check_sources(dataset, folder, grayscale)
        for name, v in (("batch_size", batch_size), ("image_size", image_size)):
            if v is not None and v < 1:
                raise ConfigError(f"data.{name} must be positive, got {v}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be 0 or more, got {num_workers}")
        if method not in METHODS:
            raise ConfigError(f"model.method must be one of {', '.join(METHODS)}, got {method!r}")
        check_view_options(min_scale, cj_strength, gaussian_blur, hf_prob)
        self.dataset, self.folder = dataset, Path(folder) if folder is not None else None
        if dataset is not None:
            dataset.set_input(image_size, mean, std)
            self.image_size, self.mean, self.std = dataset.image_size, tuple(dataset.mean), tuple(dataset.std)
            self.in_channels, self.num_classes = dataset.in_channels, dataset.num_classes
        else:
            self.in_channels, self.num_classes = (1 if grayscale else 3), FOLDER_HEAD
            self.image_size = image_size or 32
            self.mean = tuple(mean) if mean else (0.5,) * self.in_channels
            self.std = tuple(std) if std else (0.5,) * self.in_channels
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"data.mean and data.std need {self.in_channels} value(s), one per input channel; "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        self.batch_size, self.num_workers, self.method = batch_size, num_workers, method
        self.view_options = dict(
            min_scale=min_scale, cj_strength=cj_strength, gaussian_blur=gaussian_blur, hf_prob=hf_prob
        )
        self.scan_cache, self.max_pixels = scan_cache, max_pixels
        self.images: UnlabelledImages | None = None
        self.source = ""  # what the images are, for the run's first line (set in setup)
        self.skipped = 0  # a folder's files that could not be decoded

    def setup(self, stage: str | None = None) -> None:
        if self.images is not None:
            return
        views = two_views(self.method, self.image_size, self.mean, self.std, **self.view_options)
        image, n = self._dataset_images() if self.dataset is not None else self._folder_images()
        if n < self.batch_size:
            raise ConfigError(
                f"data.batch_size ({self.batch_size}) is larger than {self.source}: lower it (a step needs a full batch)"
            )
        self.images = UnlabelledImages(image, n, views)

    def _dataset_images(self) -> tuple[Callable[[int], Image.Image], int]:
        split = self.dataset.load(train=True)
        self.source = f"{type(self.dataset).__name__}'s {len(split):,} training images"
        return split.image, len(split)

    def _folder_images(self) -> tuple[Callable[[int], Image.Image], int]:
        mode = "L" if self.in_channels == 1 else "RGB"
        try:
            scan = scan_folder(self.folder, mode, self.image_size, cache=self.scan_cache, max_pixels=self.max_pixels)
        except FileNotFoundError as e:
            raise DataError(f"data.folder: {e}") from None
        self.skipped, files = len(scan.skipped), [self.folder / f for f in scan.files]
        if not files:
            raise DataError(
                f"data.folder: no readable image under {self.folder} ({self.skipped} files could not be decoded)"
            )
        self.source = f"the {len(files):,} images under {self.folder}" + (
            f" ({self.skipped} unreadable files skipped)" if self.skipped else ""
        )
        return FolderImage(files, mode, self.image_size, self.max_pixels), len(files)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            self.images,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,  # NT-Xent and BatchNorm want full batches; the shuffle changes who waits
            num_workers=self.num_workers,
            # fresh workers every epoch, seeded from the training process's random state at the
            # epoch's start: the views of an epoch then depend on that state alone, which the
            # checkpoint carries (a resumed run draws the same views)
            persistent_workers=False,
        )


class FolderImage:
    """i -> the folder's i-th image, decoded at (no less than) ``size``."""

    def __init__(self, files: Sequence[Path], mode: str, size: int, max_pixels: int | None) -> None:
        self.files, self.mode, self.size, self.max_pixels = list(files), mode, size, max_pixels

    def __call__(self, i: int) -> Image.Image:
        try:
            return open_image(self.files[i], self.mode, self.size, self.max_pixels)
        except Exception as e:  # noqa: BLE001 - decoded when scanned: changed since, say which
            raise DataError(f"{self.files[i]} could be read when the folder was scanned but not now: {e}") from None


def check_sources(dataset: ImageDataset | None, folder: str | None, grayscale: bool) -> None:
    """Exactly one of a dataset and a folder; ``grayscale`` is a folder's option."""
    if (dataset is None) == (folder is None):
        raise ConfigError(
            "pretraining reads the images of data.dataset (a dataset config, e.g. lplgrad.datasets.FashionMNIST) "
            f"or of data.folder (an image folder): give exactly one, not {'both' if dataset is not None else 'neither'}"
        )
    if dataset is not None and grayscale:
        raise ConfigError("data.grayscale is for data.folder: a dataset has its own channels")
