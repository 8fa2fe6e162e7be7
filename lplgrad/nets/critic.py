"""WAAL's critic: a small network on M's classifier input that tells unlabeled from labeled images
(Shui et al., AISTATS 2020; docs/method.md §8).

The authors' code (cjshui/WAAL, ``model.py``) gives every dataset the same shape of critic on the
feature extractor's output z: Linear(D, 50), ReLU, Dropout(0.5), Linear(50, 1), Sigmoid. Here D
is the width of M's classifier input (128 for the README's ResNet-18 of width 16).
"""

from __future__ import annotations

from torch import Tensor, nn


class WassersteinCritic(nn.Module):
    """z (B, D) -> critic value in (0, 1) (B,): high for images that look unlabeled."""

    def __init__(self, in_features: int, hidden: int = 50, dropout: float = 0.5) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z).squeeze(1)
