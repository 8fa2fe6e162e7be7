"""One vector per sample from a feature map: what A, Coreset, TypiClust and the figures read."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def pooled(f: Tensor) -> Tensor:
    """Global average of a stage output: (B, C, H, W) over the positions, (B, T, D) tokens over
    the tokens, (B, D) as it is. -> (B, C or D)"""
    if f.dim() == 4:
        return torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)
    if f.dim() == 3:
        return f.mean(1)
    return f
