"""Whether the real Fashion-MNIST is installed here (Debian's dataset-fashion-mnist, as
scripts/setup.sh installs it), for the tests that need its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lplgrad.datasets.fashion_mnist import DEBIAN_DIR


def fashion_mnist_installed() -> bool:
    return (Path(DEBIAN_DIR) / "train-images-idx3-ubyte.gz").is_file()


def require_fashion_mnist() -> None:
    """Skip the calling test when Fashion-MNIST is not installed."""
    if not fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is not installed (bash scripts/setup.sh)")
