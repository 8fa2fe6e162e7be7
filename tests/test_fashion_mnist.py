"""A short LPLgrad run on the real Fashion-MNIST (Debian package dataset-fashion-mnist)."""

import os
from pathlib import Path

import pytest

from lplgrad.cli import cli_main
from lplgrad.datasets import DatasetNotFoundError, FashionMNIST
from helpers.records import rounds_of

ROOT = Path(__file__).resolve().parents[1]


def _available() -> bool:
    try:
        FashionMNIST(download=False).load(train=False)
        return True
    except DatasetNotFoundError:
        return False


@pytest.mark.skipif(
    not _available() and not os.environ.get("CI"),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); CI requires it",
)
def test_two_rounds_on_real_fashion_mnist(tmp_path):
    cli = cli_main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/fashion_mnist.yaml"),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
            "--data.dataset.init_args.download",
            "false",
            "--data.subset_size",
            "300",
            "--data.budget",
            "200",
            "--data.test_size",
            "2000",
            "--loop.epochs_per_round",
            "20",
        ]
    )
    dm = cli.datamodule
    assert dm.pool_size == 60000 and len(dm.test_set) == 10000
    rows = rounds_of(tmp_path)
    assert [r["labeled"] for r in rows] == [100, 200]
    assert all(r["test_acc"] > 0.1 for r in rows)  # better than chance on 10 classes
