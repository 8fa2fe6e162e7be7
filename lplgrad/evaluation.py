"""Test-set evaluation after each round, exact under sharding (torchmetrics syncs the counts)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lplgrad.inference import run_eval


def evaluate(net: nn.Module, loader: DataLoader, num_classes: int, device: torch.device) -> dict[str, Tensor]:
    """Accuracy, per-class accuracy and the confusion matrix of ``net`` (eval mode, no grad)."""
    metrics = MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "per_class_acc": MulticlassAccuracy(num_classes, average="none"),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
    ).to(device)
    run_eval(net, loader, device, lambda x, y: metrics.update(net(x)[0], y.to(device)))
    return {k: v.cpu() for k, v in metrics.compute().items()}
