"""STSTNet on the 28 x 28 optical-flow image of an expression.

- `STSTNet`: Liong et al., "Shallow triple stream three-dimensional CNN (STSTNet) for
  micro-expression recognition", FG 2019.

Many folds of it train together in `mmhe.evaluation.engine` (the module itself, stacked
with torch.func) or, on the CPU, in the hand-written multi-fold trainer of
`mmhe.evaluation.fused_ststnet` (``engine="fused"``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from torch import Tensor, nn

__all__ = ["STSTNet"]


# --------------------------------------------------------------------------- STSTNet


class STSTNet(nn.Module):
    """Shallow triple-stream CNN (Liong, See, Wong, Phan, FG 2019).

    Input (N, 3, 28, 28): optical strain, horizontal and vertical TV-L1 flow between
    onset and apex. Three parallel streams of 3, 5 and 8 filters (3 x 3, "same"
    padding), each ReLU -> BatchNorm -> 3 x 3 max-pool stride 3 (-> 10 x 10) ->
    dropout 0.5; concatenated to 16 channels -> 2 x 2 average pool (-> 16 x 5 x 5 =
    400) -> linear -> logits (N, n_classes).

    The streams are computed together: every layer of a stream acts on each channel on
    its own (BatchNorm statistics, pooling and dropout are per channel) and all streams
    see the same input, so three convolutions of 3, 5 and 8 filters followed by
    per-stream layers are exactly one convolution of 16 filters followed by the same
    layers on 16 channels. Channels 0-2, 3-7 and 8-15 (`stream_slices`) are the
    streams. A plain training loop needs 1.2x to 1.4x less CPU time per sample-step
    with one 16-filter convolution and one 16-channel BatchNorm than with three streams
    (``benchmarks/bench_training.py``, rows A and A3), and the channels-last layout the
    training engine uses pays only with 16 channels (oneDNN's channels-last BatchNorm
    on 3, 5 or 8 channels is slower than in NCHW).

    1,683 trainable parameters for 3 classes (the paper quotes about 1,670). BatchNorm
    uses PyTorch's defaults (eps 1e-5, momentum 0.1); the paper trains with Adam, lr
    5e-5, batch 256, 500 epochs (`mmhe.models.model_spec("ststnet").defaults`).
    """

    stream_channels: tuple[int, ...] = (3, 5, 8)
    input_shape: tuple[int, int, int] = (3, 28, 28)

    def __init__(self, n_classes: int = 3, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.dropout = dropout
        width = sum(self.stream_channels)
        self.streams = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1),
                relu=nn.ReLU(inplace=True),
                bn=nn.BatchNorm2d(width),
                pool=nn.MaxPool2d(3, stride=3, padding=1),
                drop=nn.Dropout(dropout),
            )
        )
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(width * 5 * 5, n_classes)

    @classmethod
    def stream_slices(cls) -> list[slice]:
        """The channels of each stream (3, 5 and 8 filters) in the 16-channel layers."""
        ends = np.cumsum(cls.stream_channels)
        return [
            slice(int(end - width), int(end))
            for end, width in zip(ends, cls.stream_channels, strict=True)
        ]

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, 28, 28) -> logits (N, n_classes)."""
        return self.classifier(self.pool(self.streams(x)).flatten(1))
