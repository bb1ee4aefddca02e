"""The fused multi-fold STSTNet trainer: a hand-written fast path, kept because it pays.

``run_folds("ststnet", ..., engine="fused")`` trains F folds of STSTNet as one
`MultiFoldSTSTNet` whose first block (conv -> ReLU -> BatchNorm -> max-pool) has a
hand-written forward and backward (`_ConvReluBnMaxPool`). It is the same mathematics as
`STSTNet` (one training step equals F ordinary modules' steps to float precision,
tested) but not the module: use the default engine (`mmhe.evaluation.engine`) unless
the CPU time of a full protocol matters more than that.

Why it is kept (the issue asked to remove it unless a measurement shows it pays):
side by side on 2 loaded cores (8 LOSO folds x 12 epochs, one thread, in-process), it
trains 14,800 sample-steps per CPU-second against 9,450 for the torch.func engine on
`STSTNet`: 1.57x, which is the difference between about 2.0 h and 3.1 h for the full
MMHE protocol (275 folds x 500 epochs) on two idle cores. ``benchmarks/bench_training.py``
measures it (row "F fused STSTNet engine") beside the default engine.

How it differs from the default engine
    1. Shared rows. Each epoch draws ONE random permutation of all samples (seeded by
       epoch, `epoch_permutation`). Fold f's batches are consecutive runs of
       ``batch_size`` of ITS training samples in that order (`shared_batches`):
       restricting a uniform random permutation to a subset gives a uniform random
       permutation of the subset, so every fold sees the batch distribution of a plain
       shuffled loop. The first convolution runs once on the window of rows the folds'
       batches span, for all F x 16 output channels, and a row mask (W, F) restricts
       each fold's statistics, loss and gradient to its own rows.
    2. The fused first block: the pool commutes with the per-channel monotone
       ReLU/BatchNorm, so BatchNorm normalises only the pooled 10 x 10 map (statistics
       still over the full map) and its backward is written in closed form; rows are
       processed in cache-sized chunks in channels-last layout. Per-fold input
       normalisation is folded into the convolution exactly (zero padding included).
    3. `_StackedAdam`: Adam with a step count per fold, skipping folds without a batch
       at a step, as separate optimisers would. Adam only (STSTNet's optimiser).
    Batch order and dropout masks (numpy generators per fold) differ from the default
    engine's, so the two engines give results equal in distribution, not in value; a
    fold's result does not depend on the folds it is grouped with (tested).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmhe.errors import ConfigError
from mmhe.evaluation.engine import predict_proba
from mmhe.evaluation.scaling import missing_rows, prior
from mmhe.evaluation.settings import TrainSettings, fold_seeds, seeded_torch
from mmhe.evaluation.splits import Fold, inner_validation_split
from mmhe.models import STSTNet

_PERMUTATION_KEY = 0x5EED  # separates the shared epoch permutations from fold seeds
_SAVE_CONV_BYTES = 2**30  # keep first-layer activations for the backward pass below this


# ----------------------------------------------------------------------- the network


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


# ----------------------------------------------------------------------- training


class _StackedAdam:
    """Adam (as `torch.optim.Adam`) on parameters stacked over folds (leading axis F).

    Each fold has its own step count; `step(active)` updates only the folds in
    ``active`` (F,) bool, exactly as F separate optimisers of which some skip a step.
    """

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        n_folds: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(n_folds, dtype=torch.float64)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        self.steps += active.double()
        safe = self.steps.clamp_min(1.0)
        step_size = (self.lr / (1 - beta1**safe)).float()
        bias2_sqrt = torch.sqrt(1 - beta2**safe).float()
        everyone = bool(active.all())
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            if self.weight_decay:
                grad = grad.add(p, alpha=self.weight_decay)
            shape = (-1,) + (1,) * (p.dim() - 1)
            if everyone:
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
                p.addcdiv_(m * step_size.view(shape), denom, value=-1.0)
                continue
            a = active.view(shape)
            m.copy_(torch.where(a, m.lerp(grad, 1 - beta1), m))
            v.copy_(torch.where(a, v * beta2 + (1 - beta2) * grad * grad, v))
            denom = (v.sqrt() / bias2_sqrt.view(shape)).add_(self.eps)
            p.sub_(torch.where(a, m * step_size.view(shape) / denom, torch.zeros_like(p)))


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of all n samples shared by every fold in epoch ``epoch``."""
    return np.random.default_rng([int(seed), _PERMUTATION_KEY, int(epoch)]).permutation(n)


def shared_batches(fold_rows: np.ndarray, batch_size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Training steps of several folds over one shared sample order.

    fold_rows : (F, N) bool, True where row n (in the epoch's shared order) is a
        training sample of fold f.
    Yields (lo, hi, row_mask) per step: the window [lo, hi) of rows the step needs and
    row_mask (hi - lo, F) bool. Fold f's batches are the consecutive runs of
    ``batch_size`` of its own rows, exactly the batches of a plain shuffled loop (a
    final batch of one sample joins the previous one, as in `_batches`).
    """
    batch_of = np.where(fold_rows, (np.cumsum(fold_rows, axis=1) - 1) // batch_size, -1)
    counts = fold_rows.sum(axis=1)
    for f in np.flatnonzero((counts % batch_size == 1) & (counts > 1)):
        last = (counts[f] - 1) // batch_size
        batch_of[f, batch_of[f] == last] = last - 1
    for step in range(int(batch_of.max()) + 1):
        in_step = batch_of == step
        columns = np.flatnonzero(in_step.any(axis=0))
        if columns.size == 0:
            continue
        lo, hi = int(columns[0]), int(columns[-1]) + 1
        yield lo, hi, in_step[:, lo:hi].T


def _dropout_keep(
    row_mask: np.ndarray, rngs: Sequence[np.random.Generator], shape: tuple[int, ...], p: float
) -> torch.Tensor:
    """Dropout multipliers (W, *shape[:-1], F, C) drawn per fold for that fold's rows only,
    so a fold's masks do not depend on the other folds in its group."""
    rows, n_folds = row_mask.shape
    *spatial, channels = shape
    per_row = int(np.prod(shape))
    keep = np.zeros((rows, int(np.prod(spatial)), n_folds, channels), dtype=np.float32)
    scale = np.float32(1.0 / (1.0 - p)) if p < 1 else np.float32(0.0)
    for f in range(n_folds):
        own = np.flatnonzero(row_mask[:, f])
        if own.size == 0:
            continue
        count = own.size * per_row
        if p == 0.5:  # one random bit per unit: exact Bernoulli(1/2)
            bits = np.unpackbits(
                np.frombuffer(rngs[f].bytes((count + 7) // 8), np.uint8), count=count
            )
        else:
            bits = rngs[f].random(count, dtype=np.float32) >= p
        keep[own, :, f, :] = bits.reshape(own.size, -1, channels) * scale
    return torch.from_numpy(keep.reshape(rows, *spatial, n_folds, channels))


def train_fused_ststnet(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Sequence[Fold],
    n_classes: int,
    settings: TrainSettings,
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Train the STSTNets of several folds at once; (probabilities, info) per fold."""
    started = time.perf_counter()
    n, channels = X.shape[0], X.shape[1]
    n_folds = len(folds)
    kw = dict(settings.model_kw)
    dropout = float(kw.pop("dropout", 0.5))
    if kw:
        raise ConfigError(f"the multi-fold STSTNet engine accepts only dropout=, got {sorted(kw)}")
    seeds = [fold_seeds(settings.seed, f.index) for f in folds]
    usable = ~missing_rows(X)
    member = np.zeros((n_folds, n), dtype=bool)
    validation = np.zeros((n_folds, n), dtype=bool)
    for i, fold in enumerate(folds):
        rows = fold.train_idx[usable[fold.train_idx]]
        if settings.early_stopping:
            rows, val = inner_validation_split(rows, groups, settings.val_fraction, seeds[i][3])
            validation[i, val] = True
        member[i, rows] = True
    if not member.any(axis=1).all():
        raise ConfigError("a fold has no training sample with input")
    x64 = np.nan_to_num(X.astype(np.float64, copy=False))
    plane = X.shape[2] * X.shape[3]
    counts = member.sum(1, keepdims=True) * plane
    if settings.normalize:
        mean = member @ x64.sum((2, 3)) / counts
        var = member @ np.square(x64).sum((2, 3)) / counts - mean**2
        std = np.sqrt(np.clip(var, 0, None))
        std = np.where(std > 1e-12, std, 1.0)
    else:
        mean, std = np.zeros((n_folds, channels)), np.ones((n_folds, channels))
    mean_t, std_t = (
        torch.from_numpy(mean.astype(np.float32)),
        torch.from_numpy(std.astype(np.float32)),
    )
    models = []
    for i in range(n_folds):
        with seeded_torch(seeds[i][0]):
            models.append(STSTNet(n_classes, channels, dropout))
    multi = MultiFoldSTSTNet.from_models(models)
    optimizer = _StackedAdam(
        list(multi.parameters()), n_folds, settings.lr, weight_decay=settings.weight_decay
    )
    dropout_rngs = [np.random.default_rng(s[2]) for s in seeds]
    x_all = torch.from_numpy(np.nan_to_num(X).astype(np.float32, copy=False))
    x_rows_last = x_all.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): one gather per epoch
    y_all = torch.from_numpy(np.asarray(y, dtype=np.int64))
    width = sum(STSTNet.stream_channels)
    chunk = max(8, 1024 // (n_folds * width))
    stopped = np.zeros(n_folds, dtype=bool)
    best_loss = np.full(n_folds, np.inf)
    best_epoch = np.zeros(n_folds, dtype=int)
    epochs_run = np.zeros(n_folds, dtype=int)
    best_state: dict[str, torch.Tensor] = {k: v.clone() for k, v in multi.state_dict().items()}
    batch = settings.batch_size
    with seeded_torch(seeds[0][0]):
        for epoch in range(settings.epochs):
            if stopped.all():
                break
            order = epoch_permutation(settings.seed, epoch, n)
            x_epoch = x_rows_last[torch.from_numpy(order)].permute(0, 3, 1, 2)  # channels-last
            y_epoch = y_all[torch.from_numpy(order)]
            fold_rows = member[:, order] & ~stopped[:, None]
            saved_bytes = 2 * batch * n_folds * width * X.shape[2] * X.shape[3] * 4
            for lo, hi, row_mask in shared_batches(fold_rows, batch):
                active = row_mask.any(axis=0)
                keep = _dropout_keep(row_mask, dropout_rngs, (10, 10, width), dropout)
                loss = multi.training_loss(
                    x_epoch[lo:hi],
                    y_epoch[lo:hi],
                    torch.from_numpy(row_mask.astype(np.float32)),
                    keep,
                    mean_t,
                    std_t,
                    chunk=chunk,
                    save_conv=saved_bytes < _SAVE_CONV_BYTES,
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step(torch.from_numpy(active))
            epochs_run[~stopped] = epoch + 1
            if settings.early_stopping:
                _update_best(
                    multi,
                    x_all,
                    y,
                    validation,
                    mean,
                    std,
                    stopped,
                    best_loss,
                    best_epoch,
                    best_state,
                    epoch,
                    settings.patience,
                )
    if settings.early_stopping:
        multi.load_state_dict(best_state)
    fitted = multi.to_models()
    seconds = (time.perf_counter() - started) / n_folds
    results = []
    for i, fold in enumerate(folds):
        x_test = (X[fold.test_idx] - mean[i][None, :, None, None]) / std[i][None, :, None, None]
        test_usable = usable[fold.test_idx]
        proba = np.tile(prior(y[fold.train_idx], n_classes), (len(fold.test_idx), 1))
        if test_usable.any():
            x_t = torch.from_numpy(np.nan_to_num(x_test[test_usable]).astype(np.float32))
            proba[test_usable] = predict_proba(fitted[i], x_t)
        info = {
            "n_fit": int(member[i].sum()),
            "n_validation": int(validation[i].sum()),
            "n_train_without_input": int((~usable[fold.train_idx]).sum()),
            "n_test_without_input": int((~test_usable).sum()),
            "missing_input": ~test_usable,
            "epochs_trained": int(epochs_run[i]),
            "best_epoch": int(best_epoch[i]) if settings.early_stopping else int(epochs_run[i]),
            "seconds": seconds,
            "folds_in_group": n_folds,
        }
        results.append((proba, info))
    return results


def _update_best(
    multi: MultiFoldSTSTNet,
    x_all: torch.Tensor,
    y: np.ndarray,
    validation: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    stopped: np.ndarray,
    best_loss: np.ndarray,
    best_epoch: np.ndarray,
    best_state: dict[str, torch.Tensor],
    epoch: int,
    patience: int,
) -> None:
    """Validation loss of every running fold on its inner validation participants."""
    fitted = multi.to_models()
    state = multi.state_dict()
    for i in np.flatnonzero(~stopped):
        rows = np.flatnonzero(validation[i])
        x = (
            x_all[rows] - torch.from_numpy(mean[i]).float()[None, :, None, None]
        ) / torch.from_numpy(std[i]).float()[None, :, None, None]
        proba = predict_proba(fitted[i], x)
        loss = float(-np.log(np.clip(proba[np.arange(len(rows)), y[rows]], 1e-12, None)).mean())
        if loss < best_loss[i] - 1e-9:
            best_loss[i], best_epoch[i] = loss, epoch + 1
            for key, value in state.items():
                best_state[key][i] = value[i]
        elif epoch + 1 - best_epoch[i] >= patience:
            stopped[i] = True
