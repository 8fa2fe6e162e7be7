"""A LightningDataModule over a folder of images and a labels CSV.

The folder is scanned (every image decoded once, broken ones skipped and listed) and the CSV
checked when the module is built, so the number of classes is known before the model is.
Images whose path has a usable row in the CSV are the labeled set; the others are the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lplgrad.feature_cache import RowBatches, text_digest
from lplgrad.pool_data import PoolData, UnlabeledPartners, WithoutLabels
from lplgrad.sampling import drop_single_last, run_seed
from lplgrad.datasets import Images
from lplgrad.labeling.audit import audit_paths
from lplgrad.labeling.labels import LabelingError, parse_classes, read_labels
from lplgrad.labeling.scan import MAX_PIXELS, open_image, scan_folder
from lplgrad.split import Split
from lplgrad.transforms import eval_transform, train_transform


class LabelFolderData(PoolData):
    """Images under ``root`` (any depth, PNG/JPEG/...), labels from ``labels`` (``path,label``).

    Args:
        root: the image folder; it is only read.
        labels: the labels CSV (missing or empty: no labels yet).
        classes: the class names, in order ("a,b,c", a file with one per line, or a list);
            rows with other classes are reported and skipped. None: the classes found in the CSV,
            sorted. A checkpoint's classes are matched by name, so a new class is no trouble.
        image_size: images are resized to image_size x image_size.
        grayscale: one channel instead of RGB.
        mean, std: normalisation (default 0.5 per channel).
        flip, padding: train augmentation: random horizontal flip, random crop with this padding
            (None: image_size // 8; 0: no crop).
        query_size: b, images proposed per run.
        subset_size: score a seeded random subset of this many unlabeled images (None: all).
        min_labels: with fewer labeled images than this (or fewer than 2 classes) the network is
            not trained and the first batch is chosen without it (cold start).
        batch_size, eval_batch_size, num_workers: loaders.
        seed: seed of the subset and of random choices; linked from ``seed_everything`` (None: 0).
        scan_cache: a file (outside ``root``) remembering which images decode, by path, size
            and modification time: a later run decodes only new or changed files. The labeling
            CLI keeps it in its output folder.
        max_pixels: images with more pixels (after a JPEG's reduced-scale decoding) are skipped
            and listed, never decoded (None: no limit).
        audit_from: the output folder whose rounds drew the audit sample
            (:mod:`lplgrad.labeling.audit`): those images are held out of the split, neither
            trained on nor proposed, whether or not they have a label. The labeling CLI links it
            to ``--out``.
        feature_cache: compute the frozen part of M (``trainable_stages``) once per image, then
            train and score on those rows, without augmentation (docs/features.md; linked to
            ``model.feature_cache``).
        feature_dir: where the rows are kept; the labeling CLI links it to ``<out>/features``.
    """

    def __init__(
        self,
        root: str,
        labels: str | None = None,
        classes: str | list[str] | None = None,
        image_size: int = 32,
        grayscale: bool = False,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        flip: bool = True,
        padding: int | None = None,
        query_size: int = 20,
        subset_size: int | None = None,
        min_labels: int = 10,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        seed: int | None = None,
        scan_cache: str | None = None,
        max_pixels: int | None = MAX_PIXELS,
        audit_from: str | None = None,
        feature_cache: bool = False,
        feature_dir: str | None = None,
    ) -> None:
        for name, v in (
            ("image_size", image_size),
            ("query_size", query_size),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("min_labels", min_labels),
        ):
            if v < 1:
                raise LabelingError(f"data.{name} must be positive, got {v}")
        if subset_size is not None and subset_size < query_size:
            raise LabelingError(f"data.subset_size ({subset_size}) is smaller than data.query_size ({query_size})")
        super().__init__(eval_batch_size, num_workers, feature_cache, feature_dir)
        self.root = Path(root)
        self.labels_path = Path(labels) if labels else None
        self.image_size, self.grayscale = image_size, grayscale
        self.mode = "L" if grayscale else "RGB"
        self.in_channels = 1 if grayscale else 3
        self.mean = tuple(mean) if mean else (0.5,) * self.in_channels
        self.std = tuple(std) if std else (0.5,) * self.in_channels
        self.flip = flip
        self.padding = max(1, image_size // 8) if padding is None else padding
        self.query_size, self.subset_size, self.min_labels = query_size, subset_size, min_labels
        self.batch_size, self.seed, self.max_pixels = batch_size, seed, max_pixels
        self.given_classes = parse_classes(classes)
        if self.given_classes is not None and len(self.given_classes) < 2:
            raise LabelingError(f"the class list names {len(self.given_classes)} class: a classifier needs at least 2")
        try:
            self.scan = scan_folder(self.root, self.mode, image_size, cache=scan_cache, max_pixels=max_pixels)
        except FileNotFoundError as e:
            raise LabelingError(str(e)) from None
        self.labels_read = read_labels(
            self.labels_path,
            self.root,
            self.scan.files,
            {s.path: s.reason for s in self.scan.skipped},
            self.given_classes,
        )
        self.files: list[str] = self.scan.files
        self.audit_from = audit_from
        self._set_classes()

    # ---- classes and the split ------------------------------------------------------------
    def _set_classes(self) -> None:
        """The class list (the given one, or the CSV's classes sorted) and the targets: class index, or -1."""
        classes = self.given_classes if self.given_classes is not None else sorted(set(self.labels_read.label.values()))
        self.classes = list(classes)
        self.num_classes = max(2, len(classes))  # the network needs 2 outputs even before any label
        index = {c: i for i, c in enumerate(classes)}
        self.targets = torch.tensor(
            [index[self.labels_read.label[f]] if f in self.labels_read.label else -1 for f in self.files],
            dtype=torch.long,
        )  # (N,)
        # the labeled images, ascending: labels come from the CSV, not from a query of this run; the
        # audit sample's images are held out, labeled or not
        position = {f: i for i, f in enumerate(self.files)}
        audit = torch.tensor(sorted({position[p] for p in audit_paths(self.audit_from) if p in position}))
        audit = audit.long() if len(audit) else torch.zeros(0, dtype=torch.long)
        labeled = self.targets >= 0
        labeled[audit] = False
        self.split = Split(len(self.files), self.effective_seed, torch.nonzero(labeled).flatten(), held_out=audit)

    def class_counts(self) -> dict[str, int]:
        """Labeled images per class (the audit sample's are not counted: they are not trained on)."""
        counts = torch.bincount(self.targets[self.split.labeled], minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def cold_start_reason(self) -> str | None:
        """Why the network cannot be trained on the labels yet, or None when it can."""
        n = len(self.split)
        present = [c for c, k in self.class_counts().items() if k > 0]
        if n == 0:
            return "no image is labeled yet"
        if len(present) < 2:
            return f"every label is {present[0]!r}: a classifier needs labeled images of at least 2 classes to train"
        if n < self.min_labels:
            return f"only {n} images are labeled, fewer than data.min_labels ({self.min_labels})"
        return None

    @property
    def effective_seed(self) -> int:
        return run_seed(self.seed)

    # ---- images ---------------------------------------------------------------------------
    def _image(self, i: int):
        path = self.root / self.files[i]
        try:
            return open_image(path, self.mode, self.image_size, self.max_pixels)
        except Exception as e:
            raise LabelingError(f"{path} could be read when the folder was scanned but not now: {e}") from e

    def setup(self, stage: str | None = None) -> None:
        if self.pool is None:
            self.set_pool(
                Images(self._image, self.targets, self.mode),
                train_transform(self.image_size, self.padding, self.flip, self.mean, self.std, resize=True),
                eval_transform(self.image_size, self.mean, self.std, resize=True),
            )

    def train_dataloader(self):
        """The labeled images, shuffled and augmented; paired with as many unlabeled ones when the
        learner trains on them too (WAAL's critic)."""
        labeled = self._train_loader(self._train_view, self.split.labeled)
        if not self.learner_trains_on_unlabeled():
            return labeled
        trainer, n = self.trainer, len(self.split.labeled)
        partners = UnlabeledPartners(
            self.split.unlabeled(),
            n,
            self.effective_seed,
            trainer.current_epoch,
            0,
            1,  # the labelling app trains in one process
            self.batch_size,
            drop_single_last(n, self.batch_size),
            lambda rows, epoch: self._partner_loader(rows, drop_single_last(n, self.batch_size)),
        )
        return self.pair_unlabeled(labeled, partners)

    def _train_loader(self, view, indices: Tensor) -> DataLoader | RowBatches:
        drop_last = drop_single_last(len(indices), self.batch_size)
        if self.features:  # reshuffled from the global generator every epoch, as shuffle=True does
            return self.row_batches(indices, True, self.batch_size, order="random", drop_last=drop_last)
        idx = indices.tolist()
        return self.loader(Subset(view, idx), self.batch_size, shuffle=True, drop_last=drop_last, persistent=True)

    def _partner_loader(self, rows: Tensor, drop_last: bool) -> DataLoader | RowBatches:
        """The unlabeled images at ``rows``, in that order, with -1 for every label."""
        if self.features:
            return self.row_batches(rows, False, self.batch_size, drop_last=drop_last)
        return self.loader(Subset(WithoutLabels(self._train_view), rows.tolist()), self.batch_size, drop_last=drop_last)

    def feature_splits(self) -> dict[str, tuple[int, Callable[[], Iterable], str]]:
        """Every image of the folder, keyed by the folder, the image size and mode, and each image's
        path, size and modification time."""
        stats = [(f, *self.scan.stats.get(f, (None, None))) for f in self.files]
        images = text_digest(str(self.root.resolve()), self.mode, self.image_size, stats)
        return {"pool": (len(self.files), lambda: self.image_loader(torch.arange(len(self.files))), images)}

    def pool_dataloader(self, indices: Tensor, images: bool = True) -> DataLoader | RowBatches:
        self.setup()
        return super().pool_dataloader(indices, images)
