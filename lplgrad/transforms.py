"""The image transforms of both applications (docs/method.md, "Training phase").

Training: optional resize to ``image_size`` x ``image_size``, random crop with zero padding,
random horizontal flip, then to a tensor in [0, 1] and normalised. Evaluation and scoring: the
optional resize and the normalisation only. The random choices come from torch's global
generator, as in torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T


def _resize(image_size: int, resize: bool) -> list:
    return [T.Resize((image_size, image_size))] if resize else []


def _to_normalised(mean: Sequence[float], std: Sequence[float]) -> list:
    return [T.ToTensor(), T.Normalize(tuple(mean), tuple(std))]


def train_transform(
    image_size: int, padding: int, flip: bool, mean: Sequence[float], std: Sequence[float], resize: bool = False
) -> T.Compose:
    """Resize (if ``resize``), random crop with ``padding`` (0: none), random flip (if ``flip``), normalise."""
    aug = [T.RandomCrop(image_size, padding=padding)] if padding else []
    if flip:
        aug.append(T.RandomHorizontalFlip())
    return T.Compose(_resize(image_size, resize) + aug + _to_normalised(mean, std))


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float], resize: bool = False) -> T.Compose:
    """Resize (if ``resize``) and normalise."""
    return T.Compose(_resize(image_size, resize) + _to_normalised(mean, std))
