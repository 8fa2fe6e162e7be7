"""Which loaders an experiment's data module builds, decided once in ``setup`` (docs/benchmarks.md
on the in-memory path).

- ``PIL``: every split through the dataset's PIL transforms.
- ``TENSOR_CPU``: training batches cut and flipped from one uint8 tensor on the CPU, with draws
  from the global generator in the PIL path's order (bit-identical to ``PIL``); scoring and
  testing stay on the PIL path.
- ``TENSOR``: every split from uint8 tensors on the training device, with draws seeded per
  epoch (a GPU's path, or ``data.on_device`` on a CPU to test it).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import Tensor

from lplgrad.errors import ConfigError


class LoaderKind(Enum):
    PIL = "pil"
    TENSOR_CPU = "tensor_cpu"
    TENSOR = "tensor"

    @property
    def in_memory(self) -> bool:
        """The training images are one uint8 tensor."""
        return self is not LoaderKind.PIL

    @property
    def draws(self) -> str:
        """The tensor path's augmentation draws: "global" (the PIL path's stream) or "seeded"."""
        return "global" if self is LoaderKind.TENSOR_CPU else "seeded"

    @property
    def evaluates_on_device(self) -> bool:
        """Scoring and testing read the tensors too."""
        return self is LoaderKind.TENSOR


def choose_kind(
    in_memory: bool | None,
    on_device: bool,
    has_arrays: bool,
    dataset: str,
    device_type: str,
    num_workers: int,
    fits: Callable[[], bool],
) -> LoaderKind:
    """The loader kind for the options ``data.in_memory`` (None: auto) and ``data.on_device``.

    ``has_arrays``: the dataset is held as one uint8 array at the input size; ``fits()``: the
    splits fit in a quarter of the device's free memory (asked only on a GPU, only in auto).
    """
    if in_memory is False or (in_memory is None and not has_arrays and not on_device):
        return LoaderKind.PIL
    if not has_arrays:
        raise ConfigError(
            f"data.in_memory needs a dataset held as one uint8 array (Fashion-MNIST, CIFAR-10/100, "
            f"SVHN, digits); {dataset} is read image by image"
        )
    if on_device:
        return LoaderKind.TENSOR
    if device_type == "cpu":
        return LoaderKind.PIL if in_memory is None and num_workers > 0 else LoaderKind.TENSOR_CPU
    return LoaderKind.PIL if in_memory is None and not fits() else LoaderKind.TENSOR


def place_arrays(
    in_memory: bool | None, on_device: bool, dataset, pool, test, device: torch.device, num_workers: int
) -> tuple[LoaderKind, tuple[Tensor, Tensor] | None]:
    """The loader kind of an experiment (:func:`choose_kind`), and its pool and test images as
    uint8 tensors where the tensor path reads them: on the CPU as loaded, on a GPU moved to it
    (None on the PIL path). ``dataset``: the :class:`~lplgrad.datasets.ImageDataset`;
    ``pool``, ``test``: its loaded splits (their ``array``, or None when read image by image)."""
    p, t = pool.array, test.array
    has_arrays = p is not None and t is not None and not dataset.resize
    kind = choose_kind(
        in_memory,
        on_device,
        has_arrays,
        type(dataset).__name__,
        device.type,
        num_workers,
        lambda: 4 * (p.nbytes + t.nbytes) <= torch.cuda.mem_get_info(device)[0],
    )
    if not kind.in_memory:
        return kind, None
    return kind, ((p, t) if device.type == "cpu" else (p.to(device), t.to(device)))
