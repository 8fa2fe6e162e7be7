"""The self-supervised study's arms (configs/ssl_study/arms/, docs/ssl_study.md), tiny, on the
installed Fashion-MNIST: each layered on configs/fashion_mnist.yaml starts from a weights file
(here one of the same shape written by the test), fine-tunes or freezes the backbone as its name
says, computes the frozen features once where it is frozen, and queries with its strategy."""

from pathlib import Path

import pytest
import torch

from helpers.fashion import require_fashion_mnist
from helpers.records import rounds_of, the_run
from lplgrad.cli import cli_main
from lplgrad.nets import ResNet18

ROOT = Path(__file__).resolve().parents[1]
C = ROOT / "configs"
ARMS = [
    "ssl_study/arms/scratch_typiclust_badge.yaml",
    "ssl_study/arms/finetune_random.yaml",
    "ssl_study/arms/finetune_margin.yaml",
    "ssl_study/arms/finetune_lplgrad.yaml",
    "ssl_study/arms/finetune_typiclust_badge.yaml",
    "ssl_study/arms/frozen_random.yaml",
    "ssl_study/arms/frozen_margin.yaml",
    "ssl_study/arms/frozen_lplgrad.yaml",
    "ssl_study/arms/frozen_typiclust_badge.yaml",
    "ssl_study/arms/frozen_augmented_random.yaml",
]
STRATEGY = {
    "random": "Random",
    "augmented_random": "Random",
    "margin": "Margin",
    "lplgrad": "LPLgrad",
    "typiclust_badge": "SwitchAt",
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A backbone file as `python -m lplgrad pretrain` writes it (the net's state_dict), width 4."""
    require_fashion_mnist()
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ssl") / "backbone.pt"
    torch.save(ResNet18(10, 1, 4).state_dict(), path)
    return path


def test_every_arm_is_listed():
    assert sorted(ARMS) == sorted(p.relative_to(C).as_posix() for p in (C / "ssl_study" / "arms").glob("*.yaml"))


def tiny_args(arm: str, save_dir: Path) -> list[str]:
    args = ["fit", "--config", str(C / "fashion_mnist.yaml"), "--config", str(C / arm)]
    args += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.accelerator", "cpu"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    args += ["--trainer.callbacks.embedding_points", "8", "--data.num_workers", "0"]
    args += ["--model.backbone.init_args.width", "4", "--data.initial_size", "10", "--data.query_size", "10"]
    args += ["--data.subset_size", "60", "--data.budget", "30", "--data.test_size", "40"]
    return args + ["--loop.epochs_per_round", "1"]


@pytest.mark.parametrize("arm", ARMS)
def test_ssl_study_arm_runs_tiny(arm, weights, tmp_path):
    kind, method = Path(arm).stem.split("_", 1)
    args = tiny_args(arm, tmp_path)
    if kind != "scratch":
        args += ["--model.backbone.init_args.weights", str(weights)]
    cli = cli_main(args)
    learner, net = cli.model, cli.model.net
    assert type(cli.strategy).__name__ == STRATEGY[method]
    assert (learner.loss_head is not None) == (method == "lplgrad")
    assert net.pretrained == (kind != "scratch")
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in (net.head if kind == "frozen" else net).parameters()}
    cached = kind == "frozen" and method != "augmented_random"
    assert (the_run(tmp_path) / "features" / "pool.f32").is_file() == cached
    rows = rounds_of(tmp_path)
    assert [r["labeled"] for r in rows] == [10, 20, 30]


def test_cached_and_augmented_random_arms_label_the_same_images(weights, tmp_path):
    """The pair that measures what training without augmentation costs differs in training only."""
    queried = {}
    for arm in ("ssl_study/arms/frozen_random.yaml", "ssl_study/arms/frozen_augmented_random.yaml"):
        save_dir = tmp_path / Path(arm).stem
        cli_main([*tiny_args(arm, save_dir), "--model.backbone.init_args.weights", str(weights)])
        queried[arm] = [r["queried"] for r in rounds_of(save_dir)]
    first, second = queried.values()
    assert first == second and len(first[0]) == 10
