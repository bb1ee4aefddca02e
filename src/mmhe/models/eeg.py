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

from dataclasses import dataclass

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

    def forward_at(self, x: Tensor, plan: _BlockPlan) -> Tensor:
        """The block's output at ``plan.outputs`` only, from its input at ``plan.inputs``.

        x : (N, C, len(plan.inputs)), the input at those positions; returns (N, hidden,
        len(plan.outputs)). Same values as ``forward(full input)[..., plan.outputs]``:
        each convolution is evaluated only where it is needed, on the taps it reads
        (a tap before the first window reads the causal zero padding).
        """
        if plan.conv1_taps is None:  # needed everywhere: the ordinary causal convolution
            y = self.drop(torch.relu(self.conv1(F.pad(x, (self.left_pad, 0)))))
        else:
            y = self.drop(torch.relu(_conv_at(self.conv1, x, plan.conv1_taps)))
        y = self.drop(torch.relu(_conv_at(self.conv2, y, plan.conv2_taps)))
        if plan.residual_index is not None:
            x = x[:, :, plan.residual_index]
        return torch.relu(y + self.residual(x))


def _conv_at(conv: nn.Conv1d, x: Tensor, taps: Tensor) -> Tensor:
    """``conv`` at chosen output positions: x (N, C, P) holds the input at P positions,
    ``taps`` (Q * k,) gives for each of Q outputs the k input columns its kernel reads
    (index P = the zero padding). Returns (N, out, Q): the gathered columns (N, Q, C * k)
    times the kernel (out, C * k), the same dot products as the dilated convolution.

    A matrix product, not a strided `F.conv1d` over the columns: at one or two output
    positions oneDNN's convolution backward took 0.8-1.2 ms per call (batch 32, 128
    channels), and the TCN's training step on T = 8 windows fell from 17.6-21.5 to
    14.1-16.0 ms with the product (one thread, same process, alternated).
    """
    padded = F.pad(x, (0, 1))
    k = conv.kernel_size[0]
    columns = padded[:, :, taps]
    n, c, qk = columns.shape
    columns = columns.view(n, c, qk // k, k).transpose(1, 2).reshape(n, qk // k, c * k)
    kernel = conv.weight.reshape(conv.out_channels, c * k)
    return F.linear(columns, kernel, conv.bias).transpose(1, 2)


@dataclass(frozen=True)
class _BlockPlan:
    """Where one block is evaluated: input, middle and output positions (window
    indices, sorted) and the gather indices of its two convolutions and residual."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    conv1_taps: Tensor | None  # None: every window from every window (plain convolution)
    conv2_taps: Tensor
    residual_index: Tensor | None  # None: outputs == inputs


def _taps(outputs, inputs, dilation: int, kernel_size: int) -> Tensor:
    """For each output position, the index in ``inputs`` of each kernel tap
    (``len(inputs)`` for a tap in the causal zero padding)."""
    where = {t: i for i, t in enumerate(inputs)}
    return torch.tensor(
        [
            where.get(t - (kernel_size - 1 - j) * dilation, len(inputs))
            for t in outputs
            for j in range(kernel_size)
        ],
        dtype=torch.long,
    )


def plan_blocks(n_windows: int, dilations, kernel_size: int) -> list[_BlockPlan]:
    """Positions each residual block must be evaluated at so the last block's output at
    the last window is exact: walking back from it, a block needs its input where a kernel
    tap or the residual of a needed output lands on data (taps before window 0 read the
    causal zero padding and need nothing). With T = 8 and dilations 1..32 the blocks of
    dilation >= 8 run on the last window only."""
    plans: list[_BlockPlan] = []
    outputs: tuple[int, ...] = (n_windows - 1,)
    for dilation in reversed(list(dilations)):
        reach = range(kernel_size)
        middle = tuple(
            sorted({t - j * dilation for t in outputs for j in reach if t - j * dilation >= 0})
        )
        inputs = tuple(
            sorted(
                {t - j * dilation for t in middle for j in reach if t - j * dilation >= 0}
                | set(outputs)
            )
        )
        where = {t: i for i, t in enumerate(inputs)}
        everywhere = inputs == middle == tuple(range(n_windows))
        plans.append(
            _BlockPlan(
                inputs,
                outputs,
                None if everywhere else _taps(middle, inputs, dilation, kernel_size),
                _taps(outputs, middle, dilation, kernel_size),
                None
                if outputs == inputs
                else torch.tensor([where[t] for t in outputs], dtype=torch.long),
            )
        )
        outputs = inputs
    return plans[::-1]


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
        self._plans: dict[tuple[int, str], list[_BlockPlan]] = {}

    def forward(self, x: Tensor) -> Tensor:
        """x (N, T, F) -> logits (N, n_classes).

        Only the last window's output is classified, so each block is evaluated only
        where the receptive field of that output reaches data (`plan_blocks`): on T = 8
        windows the blocks of dilation 8, 16 and 32 see causal zero padding except at the
        last window and run there only. Same logits as `full_forward` (float rounding);
        on the demo's T = 8 a training step is about 2x faster.
        """
        n_windows = x.shape[1]
        key = (n_windows, str(x.device))
        plans = self._plans.get(key)
        if plans is None:
            dilations = [block.conv1.dilation[0] for block in self.blocks]
            plans = plan_blocks(n_windows, dilations, self.blocks[0].conv1.kernel_size[0])
            plans = [_on_device(plan, x.device) for plan in plans]
            self._plans[key] = plans
        h = x.transpose(1, 2)
        if len(plans[0].inputs) < n_windows:
            h = h[:, :, list(plans[0].inputs)]
        for block, plan in zip(self.blocks, plans, strict=True):
            h = block.forward_at(h, plan)
        return self.classifier(h[:, :, -1])

    def full_forward(self, x: Tensor) -> Tensor:
        """The same logits with every block evaluated at every window (reference)."""
        return self.classifier(self.blocks(x.transpose(1, 2))[:, :, -1])


def _on_device(plan: _BlockPlan, device: torch.device) -> _BlockPlan:
    def move(index: Tensor | None) -> Tensor | None:
        return None if index is None else index.to(device)

    return _BlockPlan(
        plan.inputs,
        plan.outputs,
        move(plan.conv1_taps),
        move(plan.conv2_taps),
        move(plan.residual_index),
    )


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
