"""What the feature-cache tests share: the digits without augmentation, a tiny experiment built in
Python (cached or not, from the same weights), and a backbone that cannot be cut."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.nn import functional as F

from lplgrad.callbacks import ActiveLearningLoop
from lplgrad.data import ActiveDataModule
from lplgrad.datasets import Digits
from lplgrad.module import ActiveLearner
from lplgrad.nets import ResNet18
from lplgrad.strategies import LPLgrad, QueryStrategy


class PlainDigits(Digits):
    """The digits with no augmentation: training sees what the evaluation transform makes."""

    padding = 0
    flip = False


class ShiftedDigits(PlainDigits):
    """The same digits with one pixel of the first pool image changed."""

    def load(self, train: bool):
        images = super().load(train)
        if train:
            images.array = images.array.clone()
            images.array[0, 0, 0, 0] ^= 1
        return images


class StepLosses(Callback):
    """Every training step's loss, in order."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def learner(cached: bool, trainable_stages: int = 1, width: int = 4, seed: int = 0) -> ActiveLearner:
    """M (a ResNet-18 frozen below its last ``trainable_stages`` stages) and A, from the same
    weights for a given ``seed`` whether cached or not."""
    torch.manual_seed(seed)
    return ActiveLearner(
        backbone=lambda c, i: ResNet18(c, i, width, trainable_stages=trainable_stages),
        num_classes=10,
        in_channels=1,
        epoch_loss=1,
        feature_cache=cached,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        scheduler=lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[100]),
    )


def data(cached: bool, dataset=None, **kw) -> ActiveDataModule:
    sizes = dict(initial_size=20, query_size=10, subset_size=60, budget=30, batch_size=8, eval_batch_size=32)
    return ActiveDataModule(dataset or PlainDigits(), **{**sizes, **kw}, feature_cache=cached)


def fit(
    cached: bool, root: Path, strategy: QueryStrategy | None = None, **kw
) -> tuple[ActiveLearner, ActiveDataModule, list[float]]:
    """Two rounds of two epochs; returns the learner, the data and every step's loss."""
    lr, dm, steps = learner(cached, **kw), data(cached), StepLosses()
    loop = ActiveLearningLoop(strategy or LPLgrad(), epochs_per_round=2, save_candidates=False)
    trainer = Trainer(
        max_epochs=-1,
        callbacks=[loop, steps],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )
    trainer.fit(lr, datamodule=dm)
    return lr, dm, steps.losses


class Unchained(nn.Module):
    """Two stages, the first frozen, whose classifier also reads the first stage's output: the part
    after the cut needs a value from before it, so it cannot run on the cut's input alone."""

    def __init__(self, num_classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.s1, self.s2 = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.linear = nn.Linear(4, num_classes)
        self.feature_channels = [4, 4]
        self.s1.requires_grad_(False)

    @property
    def head(self) -> nn.Linear:
        return self.linear

    def forward(self, x):
        f1 = F.relu(self.s1(x))
        f2 = F.relu(self.s2(f1))
        return self.linear(f2.mean((2, 3)) + f1.mean((2, 3))), [f1, f2]
