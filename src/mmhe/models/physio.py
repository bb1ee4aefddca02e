"""Physiology baseline: a multilayer perceptron on per-expression physiological features."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class PhysioMLP(nn.Module):
    """MLP on physiological feature vectors (heart rate, HRV, EDA, respiration, ... from
    `mmhe.features.physio`, z-scored by the training engine).

    Input (N, n_features) -> [Linear -> BatchNorm -> ReLU -> Dropout] per hidden layer
    -> Linear -> logits (N, n_classes).
    """

    def __init__(
        self,
        n_features: int = 32,
        n_classes: int = 3,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, n_features) -> logits (N, n_classes)."""
        return self.net(x.flatten(1))
