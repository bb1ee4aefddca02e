"""EEG baselines.

- `EEGTCN`: a temporal convolutional network (Bai, Kolter, Koltun, "An empirical
  evaluation of generic convolutional and recurrent networks for sequence modeling",
  arXiv:1803.01271, 2018) over the sequence of per-window band features, as used by the
  dataset family's EEG baselines (PSD of 5 bands x 62-64 channels per 1-s window,
  depth 6, 128 hidden units).
- `EEGNet`: Lawhern et al., "EEGNet: a compact convolutional neural network for
  EEG-based brain-computer interfaces", J. Neural Eng. 15, 2018, on raw windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmhe.errors import ConfigError


class _TemporalBlock(nn.Module):
    """Two dilated causal 1-D convolutions with ReLU and dropout, plus a residual path."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float
    ) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        # Left padding only: output t depends on inputs <= t (causal).
        y = self.drop(torch.relu(self.conv1(F.pad(x, (self.left_pad, 0)))))
        y = self.drop(torch.relu(self.conv2(F.pad(y, (self.left_pad, 0)))))
        return torch.relu(y + self.residual(x))


class EEGTCN(nn.Module):
    """Temporal convolutional network over the window sequence of EEG band features.

    Input (N, T, F): T consecutive windows (e.g. 1-s windows around an expression or
    over a trial), F = channels x 5 bands features per window (PSD or differential
    entropy, z-scored). ``depth`` residual blocks of two dilated causal convolutions
    (kernel ``kernel_size``, dilation 1, 2, 4, ...; ``hidden`` channels, ReLU, dropout)
    as in Bai et al. (2018); the output at the last window feeds a linear layer ->
    logits (N, n_classes). Defaults follow the dataset family's baseline: depth 6,
    128 hidden units. Weight normalisation of the original TCN is not used.
    """

    def __init__(
        self,
        n_features: int = 320,
        n_classes: int = 3,
        hidden: int = 128,
        depth: int = 6,
        kernel_size: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ConfigError(f"EEGTCN needs depth >= 1 and hidden >= 1, got {depth}, {hidden}")
        blocks = []
        for level in range(depth):
            blocks.append(
                _TemporalBlock(
                    n_features if level == 0 else hidden, hidden, kernel_size, 2**level, dropout
                )
            )
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, T, F) -> logits (N, n_classes)."""
        return self.classifier(self.blocks(x.transpose(1, 2))[:, :, -1])


class EEGNet(nn.Module):
    """EEGNet-8,2 (Lawhern et al., J. Neural Eng. 2018) on raw EEG windows.

    Input (N, 1, C, S): C channels x S samples (volts, z-scored per channel by the
    training engine). Block 1: temporal conv (1 x ``kernel_length``, F1 filters, same
    padding) -> BN -> depthwise spatial conv (C x 1, depth multiplier D, max-norm 1)
    -> BN -> ELU -> 1 x 4 average pool -> dropout. Block 2: separable conv (depthwise
    1 x 16 then pointwise F2) -> BN -> ELU -> 1 x 8 average pool -> dropout. Dense
    classifier (max-norm 0.25) -> logits (N, n_classes). ``kernel_length`` should be
    half the sampling rate (64 at 128 Hz). Needs S >= 32.
    Call `apply_constraints` after each optimiser step (the training engine does).
    """

    def __init__(
        self,
        n_channels: int = 64,
        n_samples: int = 256,
        n_classes: int = 3,
        f1: int = 8,
        depth_multiplier: int = 2,
        f2: int = 16,
        kernel_length: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if n_samples < 32:
            raise ConfigError(
                f"EEGNet needs windows of at least 32 samples (two average pools of 4 and 8), "
                f"got {n_samples}; use longer windows or a higher sampling rate"
            )
        f_depth = f1 * depth_multiplier
        self.temporal = nn.Sequential(
            nn.ZeroPad2d((kernel_length // 2 - 1 + kernel_length % 2, kernel_length // 2, 0, 0)),
            nn.Conv2d(1, f1, (1, kernel_length), bias=False),
            nn.BatchNorm2d(f1),
        )
        self.spatial = nn.Conv2d(f1, f_depth, (n_channels, 1), groups=f1, bias=False)
        self.block1 = nn.Sequential(
            nn.BatchNorm2d(f_depth), nn.ELU(), nn.AvgPool2d((1, 4)), nn.Dropout(dropout)
        )
        self.block2 = nn.Sequential(
            nn.ZeroPad2d((7, 8, 0, 0)),
            nn.Conv2d(f_depth, f_depth, (1, 16), groups=f_depth, bias=False),
            nn.Conv2d(f_depth, f2, 1, bias=False),
            nn.BatchNorm2d(f2),
            nn.ELU(),
            nn.AvgPool2d((1, 8)),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(f2 * (n_samples // 4 // 8), n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 1, C, S) -> logits (N, n_classes)."""
        y = self.block1(self.spatial(self.temporal(x)))
        return self.classifier(self.block2(y).flatten(1))

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Max-norm constraints of the paper: spatial filters <= 1, classifier rows <= 0.25."""
        for weight, limit in ((self.spatial.weight, 1.0), (self.classifier.weight, 0.25)):
            flat = weight.view(weight.shape[0], -1)
            norms = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
            flat.mul_(norms.clamp(max=limit) / norms)
