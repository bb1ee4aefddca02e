"""A small temporal CNN that scores every block of a long video for expressions.

Learned spotters of the MEGC track (SoftNet, Liong et al., ICIP 2021; MTSN, Liong et al.,
MEGC 2022) score each frame from optical flow with a shallow CNN and then smooth the
scores over time. `SpotNet` does both at once on the optical flow of the facial regions
(`mmhe.features.spotting.FrameScores`): the input of a video is a sequence of blocks,
each described by its regions' displacements towards the blocks one lag before and
after, at every lag; three 1-D convolutions over time (kernel 5, i.e. 1/6 s at 30 Hz,
then 5, then 1) give two logits per block, micro- and macro-expression.

>>> model = SpotNet(n_features=180)
>>> model(torch.zeros(1, 180, 300)).shape
torch.Size([1, 2, 300])
"""

from __future__ import annotations

import torch
from torch import nn


class SpotNet(nn.Module):
    """Block scorer: input (N, n_features, n_blocks), output (N, 2, n_blocks) logits of
    (micro-expression, macro-expression). About 16,000 parameters at 180 features."""

    def __init__(self, n_features: int, width: int = 16, n_outputs: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(0.2),
            nn.Conv1d(n_features, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width, width // 2, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(width // 2, n_outputs, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
