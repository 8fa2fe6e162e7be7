"""Auxiliary model A: the loss-prediction module of Yoo & Kweon (CVPR 2019), docs/method.md §2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lplgrad.nets.pool import pooled


class LossPredictionHead(nn.Module):
    """One block per stage (GAP -> Linear(C_i, hidden) -> ReLU), concatenated, Linear to one value.
    A stage's output may be a feature map (B, C, H, W) or tokens (B, T, D) (:func:`pooled`)."""

    def __init__(self, feature_channels: Sequence[int], hidden: int = 128) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(c, hidden) for c in feature_channels)
        self.out = nn.Linear(hidden * len(feature_channels), 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        parts = [F.relu(fc(pooled(f))) for fc, f in zip(self.blocks, features)]  # (B, hidden) each
        return self.out(torch.cat(parts, dim=1)).squeeze(1)  # (B,)
