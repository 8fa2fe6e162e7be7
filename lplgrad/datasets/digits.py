"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes): offline, tiny."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lplgrad.datasets.base import ImageDataset, Images, stratified_split


class Digits(ImageDataset):
    """A seeded stratified ``test_fraction`` of each class is the test set, the rest the pool."""

    num_classes = 10
    in_channels = 1
    mean, std = (0.306,), (0.377,)
    image_size = 8
    padding = 1
    flip = False

    def __init__(self, test_fraction: float = 0.25, split_seed: int = 0) -> None:
        self.test_fraction, self.split_seed = test_fraction, split_seed

    def load(self, train: bool) -> Images:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8))  # (N, 8, 8)
        targets = torch.from_numpy(d.target.astype(np.int64))
        tr, te = stratified_split(targets, self.test_fraction, self.split_seed)
        keep = tr if train else te
        return Images(
            lambda i: Image.fromarray(images[int(keep[i])].numpy()), targets[keep], "L", array=images[keep].unsqueeze(1)
        )
