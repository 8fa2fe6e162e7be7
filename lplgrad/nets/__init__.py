"""Backbones (main model M) and the loss-prediction head (auxiliary model A)."""
from lplgrad.nets.loss_head import LossPredictionHead
from lplgrad.nets.resnet import ResNet, ResNet18, ResNet34
from lplgrad.nets.small import SmallCNN

__all__ = ["LossPredictionHead", "ResNet", "ResNet18", "ResNet34", "SmallCNN"]
