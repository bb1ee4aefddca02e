"""The hand-written network of the fused STSTNet trainer (`mmhe.evaluation.fused_ststnet`).

`MultiFoldSTSTNet` holds F STSTNets as stacked parameters; its `training_loss` runs one
training step of all F on shared input rows through `_ConvReluBnMaxPool`, a fused
conv -> ReLU -> BatchNorm -> max-pool with a closed-form backward. Same mathematics as
F `STSTNet` modules (tested to float precision in tests/test_fused_ststnet.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmhe.models import STSTNet


def _add_bias_correction(conv_hwc: Tensor, correction: Tensor, border_only: bool) -> None:
    """Add a (H, W, C) correction to (N, H, W, C) in place, only its border if so flagged."""
    if not border_only:
        conv_hwc += correction
        return
    conv_hwc[:, 0] += correction[0]
    conv_hwc[:, -1] += correction[-1]
    conv_hwc[:, 1:-1, 0] += correction[1:-1, 0]
    conv_hwc[:, 1:-1, -1] += correction[1:-1, -1]


class _ConvReluBnMaxPool(torch.autograd.Function):
    """Fused first block of STSTNet for F folds: conv 3x3 -> ReLU -> BN (train) -> max-pool.

    Mathematically the same as the unfused layers; faster because

    - max-pooling commutes with the (per channel, monotone) ReLU and BatchNorm affine
      map, so the pool runs on the convolution output and BatchNorm only on the
      pooled 10 x 10 map, while the batch statistics are still taken over the full
      28 x 28 map as in the original;
    - the backward pass uses the closed-form BatchNorm gradient, which at full
      resolution is one per-channel affine function of the convolution output plus the
      sparse gradient routed through the pool's arg-max positions;
    - the work is done in row chunks in channels-last layout, where every per-channel
      operation is a contiguous inner loop that stays in cache.

    Several folds share the input rows: the convolution computes all F x 16 output
    channels at once, and ``row_mask`` (W, F) says which rows belong to each fold's
    batch; statistics and gradients of fold f only see its own rows.
    Channels with a negative BatchNorm scale pool the minimum instead of the maximum
    (the affine map is then decreasing), so the identity holds for any parameters.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        weight: Tensor,
        bias_map: Tensor,
        gamma: Tensor,
        beta: Tensor,
        row_mask: Tensor,
        eps: float,
        chunk: int,
        save_conv: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        rows, n_channels = x.shape[0], weight.shape[0]
        n_folds = row_mask.shape[1]
        per_fold = n_channels // n_folds
        height, width = x.shape[2], x.shape[3]
        plane = height * width
        ph, pw = (height - 1) // 3 + 1, (width - 1) // 3 + 1
        flip = gamma < 0
        any_flip = bool(flip.any())
        sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
        # The bias map of a convolution of a constant image is constant away from the
        # one-pixel border: fuse that constant into the convolution and correct the
        # border only (falls back to adding the whole map when it is not constant).
        interior = bias_map[:, height // 2, width // 2].contiguous()
        correction = (bias_map - interior[:, None, None]).permute(1, 2, 0).contiguous()
        border_only = height > 2 and width > 2 and not correction[1:-1, 1:-1].any()
        row_sum = torch.empty(rows, n_channels, dtype=x.dtype)
        row_sumsq = torch.empty(rows, n_channels, dtype=x.dtype)
        pooled = torch.empty(rows, ph, pw, n_channels, dtype=x.dtype)
        flat_index = torch.empty(rows, ph * pw, n_channels, dtype=torch.int64)
        # flat position (local row, pixel, channel) of a pooled value = base + pixel * C
        base = torch.arange(chunk).view(-1, 1, 1) * (plane * n_channels) + torch.arange(n_channels)
        base = base.expand(chunk, ph * pw, n_channels).contiguous()
        saved: list[Tensor] = []
        for start in range(0, rows, chunk):
            conv = F.conv2d(x[start : start + chunk], weight, interior, padding=1)
            k = conv.shape[0]
            conv_hwc = conv.permute(0, 2, 3, 1)  # contiguous (channels-last storage)
            _add_bias_correction(conv_hwc, correction, border_only)
            relu = torch.relu(conv_hwc).view(k, plane, n_channels)
            row_sum[start : start + k] = relu.sum(1)
            row_sumsq[start : start + k] = relu.square_().sum(1)
            source = conv * sign.view(1, -1, 1, 1) if any_flip else conv
            best, where = F.max_pool2d(source, 3, stride=3, padding=1, return_indices=True)
            pooled[start : start + k] = best.permute(0, 2, 3, 1)
            torch.add(
                base[:k],
                where.permute(0, 2, 3, 1).reshape(k, ph * pw, n_channels),
                alpha=n_channels,
                out=flat_index[start : start + k],
            )
            if save_conv:
                saved.append(conv)
        if any_flip:
            pooled *= sign
        mask64 = row_mask.to(torch.float64)
        count = mask64.sum(0) * plane  # (F,) elements per channel
        safe = count.clamp_min(2.0)
        s1 = torch.einsum("wf,wfc->fc", mask64, row_sum.double().view(rows, n_folds, per_fold))
        s2 = torch.einsum("wf,wfc->fc", mask64, row_sumsq.double().view(rows, n_folds, per_fold))
        mean64 = s1 / safe[:, None]
        var64 = (s2 / safe[:, None] - mean64 * mean64).clamp_min(0.0)
        unbiased64 = var64 * (safe / (safe - 1.0))[:, None]
        mean = mean64.to(x.dtype).reshape(n_channels)
        var = var64.to(x.dtype).reshape(n_channels)
        sigma = torch.sqrt(var + eps)
        scale = gamma / sigma
        relu_pooled = torch.relu(pooled)
        out = torch.addcmul(beta - scale * mean, relu_pooled, scale)
        ctx.save_for_backward(x, weight, row_mask, flat_index, relu_pooled)
        ctx.stats = (mean, sigma, scale, safe.to(x.dtype))
        ctx.chunk, ctx.saved_conv = chunk, saved
        ctx.bias_parts = (interior, correction, border_only)
        batch_mean = mean64.to(x.dtype)
        batch_var = unbiased64.to(x.dtype)
        ctx.mark_non_differentiable(batch_mean, batch_var)
        return out, batch_mean, batch_var

    @staticmethod
    def backward(ctx, grad_out: Tensor, _gm: Tensor, _gv: Tensor):  # type: ignore[override]
        x, weight, row_mask, flat_index, relu_pooled = ctx.saved_tensors
        mean, sigma, scale, count = ctx.stats
        rows, n_channels = x.shape[0], weight.shape[0]
        n_folds = row_mask.shape[1]
        per_fold = n_channels // n_folds
        height, width = x.shape[2], x.shape[3]
        grad_out = grad_out.contiguous()
        grad_beta = grad_out.sum((0, 1, 2))
        grad_gamma = ((grad_out * relu_pooled).sum((0, 1, 2)) - mean * grad_beta) / sigma
        per_channel_count = count.repeat_interleave(per_fold)
        mean_grad = grad_beta / per_channel_count
        mean_grad_xhat = grad_gamma / per_channel_count
        constant = -scale * mean_grad + scale * mean_grad_xhat * mean / sigma
        slope = -scale * mean_grad_xhat / sigma
        channel_mask = row_mask.to(x.dtype).repeat_interleave(per_fold, dim=1)
        constant_rows = (channel_mask * constant).view(rows, 1, 1, n_channels)
        slope_rows = (channel_mask * slope).view(rows, 1, 1, n_channels)
        routed = (grad_out * scale).mul_(relu_pooled > 0).view(rows, -1)
        grad_weight = torch.zeros_like(weight)
        grad_bias = torch.zeros(height, width, n_channels, dtype=x.dtype)
        interior, correction, border_only = ctx.bias_parts
        for index, start in enumerate(range(0, rows, ctx.chunk)):
            x_chunk = x[start : start + ctx.chunk]
            k = x_chunk.shape[0]
            if ctx.saved_conv:
                conv = ctx.saved_conv[index]
                conv_hwc = conv.permute(0, 2, 3, 1)
            else:
                conv = F.conv2d(x_chunk, weight, interior, padding=1)
                conv_hwc = conv.permute(0, 2, 3, 1)
                _add_bias_correction(conv_hwc, correction, border_only)
            dense = torch.addcmul(
                constant_rows[start : start + k], conv_hwc, slope_rows[start : start + k]
            )
            grad_conv = torch.ops.aten.threshold_backward(dense, conv_hwc, 0.0)
            grad_conv.view(-1).index_add_(
                0, flat_index[start : start + k].view(-1), routed[start : start + k].view(-1)
            )
            _, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_conv.permute(0, 3, 1, 2),
                x_chunk,
                weight,
                None,
                [1, 1],
                [1, 1],
                [1, 1],
                False,
                [0, 0],
                1,
                [False, True, False],
            )
            grad_weight += grad_w
            grad_bias += grad_conv.sum(0)
        ctx.saved_conv = None
        return (
            None,
            grad_weight,
            grad_bias.permute(2, 0, 1),
            grad_gamma,
            grad_beta,
            None,
            None,
            None,
            None,
        )


class MultiFoldSTSTNet(nn.Module):
    """F independent STSTNets (one per fold) stored as stacked parameters.

    Built with `from_models` from F ordinary `STSTNet` modules (so each fold keeps the
    standard initialisation) and turned back into F modules with `to_models` for
    prediction. `training_loss` runs one training step of all folds on shared input
    rows, each fold seeing only its own rows (``row_mask``), its own input
    normalisation, its own BatchNorm statistics and its own dropout mask. The returned
    loss is the sum over folds of each fold's mean cross-entropy, so the gradient for
    fold f's parameters is exactly the gradient of its own loss.

    Parameters: ``conv_weight`` (F, 16, C, 3, 3), ``conv_bias``/``bn_weight``/``bn_bias``
    (F, 16), ``fc_weight`` (F, K, 400), ``fc_bias`` (F, K); buffers ``running_mean``,
    ``running_var`` (F, 16) and ``num_batches_tracked`` (F,).
    """

    def __init__(
        self,
        n_folds: int,
        n_classes: int = 3,
        in_channels: int = 3,
        dropout: float = 0.5,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        width = sum(STSTNet.stream_channels)
        self.n_folds, self.n_classes, self.in_channels = n_folds, n_classes, in_channels
        self.dropout, self.eps, self.momentum = dropout, eps, momentum
        self.conv_weight = nn.Parameter(torch.zeros(n_folds, width, in_channels, 3, 3))
        self.conv_bias = nn.Parameter(torch.zeros(n_folds, width))
        self.bn_weight = nn.Parameter(torch.ones(n_folds, width))
        self.bn_bias = nn.Parameter(torch.zeros(n_folds, width))
        self.fc_weight = nn.Parameter(torch.zeros(n_folds, n_classes, width * 25))
        self.fc_bias = nn.Parameter(torch.zeros(n_folds, n_classes))
        self.register_buffer("running_mean", torch.zeros(n_folds, width))
        self.register_buffer("running_var", torch.ones(n_folds, width))
        self.register_buffer("num_batches_tracked", torch.zeros(n_folds, dtype=torch.long))

    @classmethod
    def from_models(cls, models: list[STSTNet]) -> MultiFoldSTSTNet:
        """Stack F `STSTNet` modules (same number of classes and input channels)."""
        first = models[0].streams
        stacked = cls(
            len(models),
            models[0].n_classes,
            first.conv.in_channels,
            models[0].dropout,
            first.bn.eps,
            first.bn.momentum,
        )
        with torch.no_grad():
            for f, model in enumerate(models):
                for name, tensor in stacked._pairs(model):
                    getattr(stacked, name)[f] = tensor
        return stacked

    def _pairs(self, model: STSTNet) -> list[tuple[str, Tensor]]:
        """(stacked name, the module's tensor) for every parameter and buffer."""
        s = model.streams
        return [
            ("conv_weight", s.conv.weight),
            ("conv_bias", s.conv.bias),
            ("bn_weight", s.bn.weight),
            ("bn_bias", s.bn.bias),
            ("running_mean", s.bn.running_mean),
            ("running_var", s.bn.running_var),
            ("num_batches_tracked", s.bn.num_batches_tracked),
            ("fc_weight", model.classifier.weight),
            ("fc_bias", model.classifier.bias),
        ]

    def to_models(self) -> list[STSTNet]:
        """One ordinary `STSTNet` per fold, carrying that fold's parameters and buffers."""
        models = []
        with torch.no_grad():
            for f in range(self.n_folds):
                model = STSTNet(self.n_classes, self.in_channels, self.dropout)
                model.streams.bn.eps, model.streams.bn.momentum = self.eps, self.momentum
                for name, tensor in self._pairs(model):
                    tensor.copy_(getattr(self, name)[f])
                models.append(model)
        return models

    def training_loss(
        self,
        x: Tensor,
        targets: Tensor,
        row_mask: Tensor,
        keep: Tensor,
        input_mean: Tensor | None = None,
        input_std: Tensor | None = None,
        chunk: int = 32,
        save_conv: bool = True,
    ) -> Tensor:
        """Sum over folds of each fold's mean cross-entropy on its rows (one training step).

        x : (W, C, 28, 28) raw input rows shared by the folds (any memory format).
        targets : (W,) int64 class indices.
        row_mask : (W, F) 1.0 where the row is in fold f's batch, else 0.0.
        keep : (W, 10, 10, F, 16) dropout multipliers (0 or 1 / (1 - p)) per fold.
        input_mean, input_std : (F, C) per-fold input normalisation (fit on that fold's
            training rows); the first convolution absorbs it exactly, zero padding
            included, so the shared raw rows never need a per-fold copy.
        Updates the BatchNorm running statistics of the folds that have rows.
        """
        n_folds, width = self.n_folds, self.conv_weight.shape[1]
        channels = n_folds * width
        rows = x.shape[0]
        x = x.contiguous(memory_format=torch.channels_last)
        if input_mean is None or input_std is None:
            input_mean = torch.zeros(n_folds, self.in_channels)
            input_std = torch.ones(n_folds, self.in_channels)
        weight = self.conv_weight / input_std.view(n_folds, 1, -1, 1, 1)
        offset_image = (input_mean / input_std).view(1, n_folds * self.in_channels, 1, 1)
        offset_image = offset_image.expand(1, -1, x.shape[2], x.shape[3])
        offset = F.conv2d(
            offset_image,
            self.conv_weight.reshape(channels, self.in_channels, 3, 3),
            None,
            padding=1,
            groups=n_folds,
        )
        bias_map = self.conv_bias.reshape(channels, 1, 1) - offset[0]
        out, batch_mean, batch_var = _ConvReluBnMaxPool.apply(
            x,
            weight.reshape(channels, self.in_channels, 3, 3),
            bias_map,
            self.bn_weight.reshape(channels),
            self.bn_bias.reshape(channels),
            row_mask,
            self.eps,
            chunk,
            save_conv,
        )
        ph, pw = out.shape[1], out.shape[2]
        dropped = out.view(rows, ph, pw, n_folds, width) * keep
        pooled = F.avg_pool2d(dropped.view(rows, ph, pw, channels).permute(0, 3, 1, 2), 2)
        # (W, F x 16, 5, 5) -> per fold (F, W, 400) in the (c, h, w) order of STSTNet
        features = pooled.reshape(rows, n_folds, width * (ph // 2) * (pw // 2)).transpose(0, 1)
        logits = torch.baddbmm(self.fc_bias.unsqueeze(1), features, self.fc_weight.transpose(1, 2))
        losses = F.cross_entropy(
            logits.reshape(n_folds * rows, self.n_classes),
            targets.repeat(n_folds),
            reduction="none",
        ).view(n_folds, rows)
        counts = row_mask.sum(0)
        loss = ((losses * row_mask.T).sum(1) / counts.clamp_min(1.0)).sum()
        with torch.no_grad():
            active = counts > 0
            m = self.momentum
            self.running_mean[active] = (1 - m) * self.running_mean[active] + m * batch_mean[active]
            self.running_var[active] = (1 - m) * self.running_var[active] + m * batch_var[active]
            self.num_batches_tracked[active] += 1
        return loss

    def forward(self, x: Tensor) -> Tensor:
        """Logits of every fold's model on the same input: (F, N, n_classes), eval mode."""
        return torch.stack([model.eval()(x) for model in self.to_models()])
