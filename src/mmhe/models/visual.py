"""Visual (face) baselines on the optical-flow image of an expression.

Every model takes the stacked flow image of the onset -> apex motion, shape
(N, 3, S, S) float32, channels (optical strain, horizontal flow u, vertical flow v) as
`mmhe.features.flow` writes them (S = 28, or 128 for `MMHENet`), and returns logits
(N, n_classes).

- `MMHENet`: the MMHE dataset paper's own visual baseline (three single-channel streams
  at 128 x 128).
- `STSTNet`: Liong et al., "Shallow triple stream three-dimensional CNN (STSTNet) for
  micro-expression recognition", FG 2019 (in `mmhe.models.ststnet`).
- `OffApexNet`: Gan et al., "OFF-ApexNet on micro-expression recognition system",
  Signal Processing: Image Communication 74, 2019.
- `RCNA`: Xia et al., "Revealing the invisible with model and data shrinking for
  composite-database micro-expression recognition", IEEE TIP 29, 2020 (RCN-A).
- `FeatRef`: Zhou et al., "Feature refinement: an expression-specific feature learning
  and fusion method for micro-expression recognition", Pattern Recognition 122, 2022.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmhe.models.ststnet import STSTNet

__all__ = [
    "FLOW_CHANNELS",
    "RCNA",
    "FeatRef",
    "MMHENet",
    "OffApexNet",
    "STSTNet",
]

FLOW_CHANNELS = ("strain", "u", "v")
"""Channel order of the flow image every visual model expects."""


# --------------------------------------------------------------------------- MMHE


class MMHENet(nn.Module):
    """The MMHE dataset paper's visual baseline, as drawn in its network figure.

    Input (N, 3, S, S), S = 128 as published: optical strain, u and v of the face aligned
    and masked (`mmhe.features.flow.flow_image(..., size=128)`). Three streams, one per
    channel (strain, u, v), each: conv 3 x 3, stride 2, padding 1, 8 filters (-> 8 x 64 x
    64) -> BatchNorm -> ReLU -> 2 x 2 max-pool (-> 8 x 32 x 32) -> dropout; concatenated
    (24 x 32 x 32) -> 2 x 2 average pool (24 x 16 x 16 = 6,144) -> fully connected ->
    logits (N, n_classes).

    18,723 trainable parameters for 3 classes (3 x (72 + 8 conv + 16 BatchNorm) = 288, and
    6,144 x 3 + 3 = 18,435 in the classifier); 43,303 for 7 classes. The figure gives no
    dropout rate nor training settings: dropout 0.5 (as STSTNet) and the registry's Adam
    defaults are our choice (`mmhe.models.model_spec("mmhe_net").defaults`). Another
    ``image_size`` S resizes the classifier to 24 x s^2 inputs, s = floor(ceil(S / 2) / 4)
    (s = 3 on the 28 x 28 STSTNet image).
    """

    stream_width: int = 8

    def __init__(
        self,
        n_classes: int = 3,
        in_channels: int = 3,
        image_size: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        side = (image_size + 1) // 2 // 2 // 2  # conv stride 2, max-pool 2, average pool 2
        if side < 1:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        self.n_classes = n_classes
        self.image_size = image_size
        self.streams = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1, self.stream_width, 3, stride=2, padding=1),
                nn.BatchNorm2d(self.stream_width),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Dropout(dropout),
            )
            for _ in range(in_channels)
        )
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(in_channels * self.stream_width * side * side, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, S, S) -> logits (N, n_classes)."""
        features = torch.cat(
            [stream(x[:, i : i + 1]) for i, stream in enumerate(self.streams)], dim=1
        )
        return self.classifier(self.pool(features).flatten(1))


# ----------------------------------------------------------------------- OFF-ApexNet


class OffApexNet(nn.Module):
    """OFF-ApexNet (Gan, Liong, Yau, Huang, Tan, Signal Process. Image Commun. 2019).

    Two streams, one for the horizontal and one for the vertical optical flow between
    onset and apex; each: conv 5 x 5 (6 filters, same padding) -> ReLU -> 2 x 2
    max-pool -> conv 5 x 5 (16 filters) -> ReLU -> 2 x 2 max-pool (-> 16 x 7 x 7);
    the two are concatenated (1,568) -> FC 1024 -> ReLU -> dropout -> FC 1024 -> ReLU
    -> dropout -> linear. Input (N, 3, 28, 28) in `FLOW_CHANNELS` order; the streams
    read channels ``flow_channels`` (default u and v; the strain channel is unused, as
    in the paper). Output logits (N, n_classes). Paper: Adam, lr 1e-4.
    """

    def __init__(
        self,
        n_classes: int = 3,
        flow_channels: tuple[int, int] = (1, 2),
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.flow_channels = tuple(flow_channels)

        def stream() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
            )

        self.horizontal, self.vertical = stream(), stream()
        self.head = nn.Sequential(
            nn.Linear(2 * 16 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, 28, 28) -> logits (N, n_classes)."""
        u, v = self.flow_channels
        features = torch.cat(
            [self.horizontal(x[:, u : u + 1]), self.vertical(x[:, v : v + 1])], dim=1
        )
        return self.head(features)


# --------------------------------------------------------------------------- RCN-A


class _RecurrentConvBlock(nn.Module):
    """Recurrent convolution block of RCN: a 1 x 1 feed-forward conv, then one shared
    3 x 3 conv applied twice to (input + previous output), BN + ReLU after each,
    then 2 x 2 max-pool and dropout."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.feed_forward = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.recurrent_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.recurrent_norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(2))
        self.downsample = nn.Sequential(nn.MaxPool2d(2), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        y = self.feed_forward(x)
        for norm in self.recurrent_norms:
            y = torch.relu(norm(self.recurrent_conv(x + y)))
        return self.downsample(y)


class RCNA(nn.Module):
    """RCN-A: recurrent convolutional network with parameter-free attention (Xia et al., TIP 2020).

    Input (N, 3, 28, 28) flow image -> 5 x 5 conv (no padding, C filters) -> BN ->
    ReLU -> 2 x 2 max-pool -> dropout (-> C x 12 x 12) -> recurrent convolution block
    (-> C x 6 x 6) -> adaptive average pool to P x P. The parameter-free attention map
    is computed from the classifier's own weights: for each class k, its weights
    reshaped to (C, P, P) multiply the first block's features (adaptive-average-pooled
    to P x P), are averaged over channels and min-max normalised over the P x P map;
    the K maps are averaged into one (N, 1, P, P) map that multiplies the block output
    before the linear classifier. Output logits (N, n_classes). C = 32..64, P = 5..7;
    paper: SGD momentum 0.9, lr 5e-4, batch 64. Weights are initialised as in the
    authors' release (Kaiming-normal convolutions, N(0, 0.01) classifier).
    """

    def __init__(
        self,
        n_classes: int = 3,
        in_channels: int = 3,
        channels: int = 32,
        pool_size: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 5),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
        )
        self.block = _RecurrentConvBlock(channels, dropout)
        self.classifier = nn.Linear(channels * pool_size * pool_size, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def attention(self, stem_features: Tensor) -> Tensor:
        """Parameter-free attention map (N, 1, P, P) in [0, 1] from stem features (N, C, H, W)."""
        p = self.pool_size
        pooled = F.adaptive_avg_pool2d(stem_features, (p, p))  # N, C, P, P
        weights = self.classifier.weight.view(-1, pooled.shape[1], p, p)  # K, C, P, P
        maps = torch.einsum("kcij,ncij->nkij", weights, pooled) / pooled.shape[1]
        low = maps.amin(dim=(2, 3), keepdim=True)
        high = maps.amax(dim=(2, 3), keepdim=True)
        maps = (maps - low) / (high - low).clamp_min(1e-12)
        return maps.mean(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, 28, 28) -> logits (N, n_classes)."""
        stem = self.stem(x)
        p = self.pool_size
        features = F.adaptive_avg_pool2d(self.block(stem), (p, p)) * self.attention(stem)
        return self.classifier(features.flatten(1))


# -------------------------------------------------------------------------- FeatRef


class _Inception(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 (a 5x5 field) | 3x3 max-pool
    -> 1x1, each branch conv -> BN -> ReLU, concatenated (4 x ``branch`` channels)."""

    def __init__(self, in_channels: int, branch: int) -> None:
        super().__init__()

        def unit(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU()]

        self.b1 = nn.Sequential(*unit(in_channels, branch, 1))
        self.b3 = nn.Sequential(*unit(in_channels, branch, 1), *unit(branch, branch, 3))
        self.b5 = nn.Sequential(
            *unit(in_channels, branch, 1), *unit(branch, branch, 3), *unit(branch, branch, 3)
        )
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *unit(in_channels, branch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class FeatRef(nn.Module):
    """FeatRef: expression-specific feature learning and fusion (Zhou et al., PR 2022).

    Input (N, 3, 28, 28) flow image; output logits (N, n_classes).

    1. Shared inception features: the horizontal and the vertical flow each pass
       through their own two inception blocks (2 x 2 max-pool after each,
       -> 4b x 7 x 7), concatenated to 8b channels.
    2. Expression-specific branches, one per class k: a spatial attention map
       (1 x 1 conv -> sigmoid) and a channel attention (squeeze-excitation) refine the
       shared features; a 3 x 3 conv + global average pool gives the class's feature
       vector f_k (``embed`` values), and a binary head scores "class k vs the rest".
    3. Fusion: the K vectors are concatenated and classified by a linear layer.

    `training_loss` = cross-entropy of the fused prediction + ``aux_weight`` x the mean
    binary cross-entropy of the K expression-specific heads (one-vs-rest targets).

    What the paper leaves open and what is chosen here: the inception widths (b = 8
    filters per branch, the 5 x 5 branch factorised into two 3 x 3 convs), the form of
    the attention (spatial sigmoid map x squeeze-excitation channel weights), the size
    of the expression-specific vectors (``embed`` = 32), the fusion operator
    (concatenation), the weight of the auxiliary loss (1.0) and the use of the strain
    channel (not used: the paper feeds the two flow components).
    """

    def __init__(
        self,
        n_classes: int = 3,
        flow_channels: tuple[int, int] = (1, 2),
        branch: int = 8,
        embed: int = 32,
        dropout: float = 0.5,
        aux_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_classes, self.aux_weight = n_classes, aux_weight
        self.flow_channels = tuple(flow_channels)

        def extractor() -> nn.Sequential:
            return nn.Sequential(
                _Inception(1, branch),
                nn.MaxPool2d(2),
                _Inception(4 * branch, branch),
                nn.MaxPool2d(2),
            )

        self.horizontal, self.vertical = extractor(), extractor()
        shared = 8 * branch
        self.spatial = nn.ModuleList(nn.Conv2d(shared, 1, 1) for _ in range(n_classes))
        self.channel = nn.ModuleList(
            nn.Sequential(
                nn.Linear(shared, shared // 4),
                nn.ReLU(),
                nn.Linear(shared // 4, shared),
                nn.Sigmoid(),
            )
            for _ in range(n_classes)
        )
        self.refine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(shared, embed, 3, padding=1), nn.BatchNorm2d(embed), nn.ReLU())
            for _ in range(n_classes)
        )
        self.binary = nn.ModuleList(nn.Linear(embed, 1) for _ in range(n_classes))
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_classes * embed, n_classes)

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Fused logits (N, K) and expression-specific binary logits (N, K)."""
        u, v = self.flow_channels
        shared = torch.cat(
            [self.horizontal(x[:, u : u + 1]), self.vertical(x[:, v : v + 1])], dim=1
        )
        vectors, binary = [], []
        for k in range(self.n_classes):
            spatial = torch.sigmoid(self.spatial[k](shared))
            channel = self.channel[k](shared.mean(dim=(2, 3)))[:, :, None, None]
            refined = self.refine[k](shared * spatial * channel).mean(dim=(2, 3))
            vectors.append(refined)
            binary.append(self.binary[k](refined))
        fused = self.classifier(self.drop(torch.cat(vectors, dim=1)))
        return fused, torch.cat(binary, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 3, 28, 28) -> logits (N, n_classes)."""
        return self.branches(x)[0]

    def training_loss(self, x: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy + aux_weight x mean one-vs-rest BCE of the expression branches."""
        fused, binary = self.branches(x)
        one_hot = F.one_hot(targets, self.n_classes).to(binary.dtype)
        return F.cross_entropy(fused, targets) + self.aux_weight * (
            F.binary_cross_entropy_with_logits(binary, one_hot)
        )
