"""CIFAR-style ResNet-18: the paper's main model M (docs/method.md §2).

3x3 stem with stride 1 and no max-pool, BasicBlocks [2, 2, 2, 2]. ``width`` scales the four
stage widths (64 gives the paper's 64/128/256/512 and ~11.2M parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.nets.weights import freeze_before, frozen_batchnorms_to_eval, load_except, read_state_dict


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Returns ``(logits, [stage1, stage2, stage3, stage4])`` and exposes ``feature_channels``.

    ``weights``: start from a file (a state_dict, or an lplgrad checkpoint, whose ``net.`` tensors
    are taken); the classifier is left new, for this run's classes. ``trainable_stages``: train
    the last k stages and the classifier only (None: everything).
    """

    STAGES = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        width: int = 64,
        weights: str | None = None,
        trainable_stages: int | None = None,
    ) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.feature_channels = widths
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_planes = width
        stages = []
        for i, (planes, n) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(widths[-1], num_classes)
        self.pretrained = weights is not None  # its features mean something before any label
        if weights is not None:
            load_except(self, read_state_dict(weights, prefix="net."), ["linear."], weights)
        freeze_before(self, self.STAGES, trainable_stages)
        frozen_batchnorms_to_eval(self)  # from the start, not only from the first train() call

    @property
    def head(self) -> nn.Linear:
        return self.linear

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The modules whose outputs are the stage features (for the feature cache, :mod:`lplgrad.nets.cut`)."""
        return self.STAGES

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        frozen_batchnorms_to_eval(self)
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        out = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(out)  # (B, w, H, W)
        f2 = self.layer2(f1)  # (B, 2w, H/2, W/2)
        f3 = self.layer3(f2)  # (B, 4w, H/4, W/4)
        f4 = self.layer4(f3)  # (B, 8w, H/8, W/8)
        pooled = torch.flatten(F.adaptive_avg_pool2d(f4, 1), 1)  # (B, 8w)
        return self.linear(pooled), [f1, f2, f3, f4]


class ResNet18(ResNet):
    """The paper's backbone; ``width`` 64 is paper-exact, smaller widths suit a CPU."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 64,
        weights: str | None = None,
        trainable_stages: int | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, (2, 2, 2, 2), width, weights, trainable_stages)


class ResNet34(ResNet):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 64,
        weights: str | None = None,
        trainable_stages: int | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, (3, 4, 6, 3), width, weights, trainable_stages)
