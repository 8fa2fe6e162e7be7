"""A small four-stage CNN with the same interface as ResNet: quick tests and tiny images."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (the last three stride 2), GAP, linear head."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.feature_channels = widths
        stages, c = [], in_channels
        for i, w in enumerate(widths):
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(),
                )
            )
            c = w
        self.stages = nn.ModuleList(stages)
        self.linear = nn.Linear(widths[-1], num_classes)

    @property
    def head(self) -> nn.Linear:
        return self.linear

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"stages.{i}" for i in range(len(self.stages)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 8w)
        return self.linear(pooled), feats
