"""The two augmented views of one image that self-supervised pretraining compares.

lightly's view transforms (``lightly.transforms``, lightly 1.6) on one PIL image at a time, in
the data loader: SimCLR's (Chen et al. 2020, §3 and appendix A: random resized crop, flip,
colour jitter, random grey) for both views, or BYOL's two asymmetric ones (Grill et al. 2020,
appendix B: view 2 with solarisation). The settings default to those of lightly's CIFAR-10
benchmark for small images (docs/source/getting_started/benchmarks/cifar10_benchmark.py:
``input_size=32, cj_strength=0.5, gaussian_blur=0.0``), at the dataset's own size.

Each view is normalised with the mean and std the active-learning run uses for these images,
so that the backbone learns on inputs scaled as it will see them later. A one-channel image
gets one-channel statistics and stays one channel (lightly's ImageNet default would broadcast it
to three).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PIL import Image
from torch import Tensor

from lplgrad.errors import ConfigError

METHODS = ("simclr", "byol")


def check_view_options(min_scale: float, cj_strength: float, gaussian_blur: float, hf_prob: float) -> None:
    """One line for a setting lightly would take and misuse (or fail on deep in a worker)."""
    if not 0.0 < min_scale <= 1.0:
        raise ConfigError(f"data.min_scale must be in (0, 1] (the smallest crop's share of the image), got {min_scale}")
    if cj_strength < 0:
        raise ConfigError(f"data.cj_strength must be 0 or more, got {cj_strength}")
    for name, p in (("gaussian_blur", gaussian_blur), ("hf_prob", hf_prob)):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"data.{name} is a probability, in [0, 1]; got {p}")


def two_views(
    method: str,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    min_scale: float = 0.08,
    cj_strength: float = 0.5,
    gaussian_blur: float = 0.0,
    hf_prob: float = 0.5,
) -> Callable[[Image.Image], list[Tensor]]:
    """PIL image -> [view 0, view 1], each a float tensor (C, size, size), C = len(mean).

    ``min_scale``: the smallest crop (fraction of the image's area); ``cj_strength``: colour
    jitter strength (brightness, contrast, saturation and hue jitter of SimCLR's 0.8/0.8/0.8/0.2
    or BYOL's 0.4/0.4/0.2/0.1, times this; saturation and hue do nothing to grey images);
    ``gaussian_blur``: probability of a blur (BYOL: of view 1's; lightly's benchmark turns it off
    for 32-pixel images); ``hf_prob``: probability of a horizontal flip.
    """
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform, SimCLRTransform

    check_view_options(min_scale, cj_strength, gaussian_blur, hf_prob)
    if len(mean) != len(std):
        raise ConfigError(f"data.mean has {len(mean)} values but data.std {len(std)}")
    normalize = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    common = dict(input_size=size, cj_strength=cj_strength, min_scale=min_scale, hf_prob=hf_prob, normalize=normalize)
    if method == "simclr":
        return SimCLRTransform(gaussian_blur=gaussian_blur, **common)
    if method == "byol":  # view 2 keeps BYOL's own rarer blur (0.1), scaled like view 1's
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(gaussian_blur=gaussian_blur, **common),
            view_2_transform=BYOLView2Transform(gaussian_blur=0.1 * gaussian_blur, **common),
        )
    raise ConfigError(f"model.method must be one of {', '.join(METHODS)}, got {method!r}")
