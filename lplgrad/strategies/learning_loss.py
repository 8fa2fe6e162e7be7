"""LearningLoss (Yoo & Kweon, CVPR 2019): highest loss predicted by the auxiliary model A first."""

from __future__ import annotations

import torch
from torch import Tensor

from lplgrad.strategies.base import Learner, QueryStrategy


class LearningLoss(QueryStrategy):
    requires_aux = True

    def measure(self, learner: Learner, x: Tensor) -> Tensor:
        with torch.no_grad():
            _, feats = learner.net(x)
            return learner.loss_head(feats).float()  # (B,)
