"""Backbones (main model M) and the loss-prediction head (auxiliary model A).

Every backbone returns ``(logits, [stage outputs])`` and exposes ``feature_channels`` (the stage
widths A is sized from) and ``head`` (the final linear layer).
"""

from lplgrad.nets.library import LibraryNet, TimmNet, TorchvisionNet
from lplgrad.nets.loss_head import LossPredictionHead
from lplgrad.nets.pool import pooled
from lplgrad.nets.resnet import ResNet, ResNet18, ResNet34
from lplgrad.nets.small import SmallCNN
from lplgrad.errors import WeightsNotFoundError

__all__ = [
    "LibraryNet",
    "LossPredictionHead",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "SmallCNN",
    "TimmNet",
    "TorchvisionNet",
    "WeightsNotFoundError",
    "pooled",
]
