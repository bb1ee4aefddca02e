"""The fused multi-fold STSTNet trainer: a hand-written fast path, kept because it pays.

``run_folds("ststnet", ..., engine="fused")`` trains F folds of STSTNet as one
`MultiFoldSTSTNet` whose first block (conv -> ReLU -> BatchNorm -> max-pool) has a
hand-written forward and backward (`_ConvReluBnMaxPool`). It is the same mathematics as
`STSTNet` (one training step equals F ordinary modules' steps to float precision,
tested) but not the module: use the default engine (`mmhe.evaluation.engine`) unless
the CPU time of a full protocol matters more than that.

Why it is kept (the issue asked to remove it unless a measurement shows it pays): it
needs less CPU time per sample-step than the torch.func engine on `STSTNet`. Side by
side in one process (8 LOSO folds x 12 epochs, one thread, shared 2-core machine):
12,000 against 8,750 sample-steps per CPU-second (1.37x; 1.57x in an earlier pair of
runs under heavier load), about 2.4 h instead of 3.3 h for the full MMHE protocol
(275 folds x 500 epochs) on two idle cores. On Dask workers (``benchmarks/
bench_training.py``, rows F and C, three runs) the gain was 1.03x to 1.56x; after the
engine trained a group of one in place, 1.30x (11,145 against 8,564 per CPU-second,
3 seeds each, 24 folds x 6 epochs); in two later runs 1.40x and 1.16x on the workers,
1.42x and 1.45x in one process (rows F1 and C1: 12,786 against 8,988 and 12,692 against
8,768). It gains because it does not run the module's kernels: the step anatomy of the
same benchmark puts STSTNet's own forward and backward at 20.5 of the plain loop's 43.7
ms per step, so no trainer of the module can be more than 2.13x the plain loop.

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

from mmhe.errors import ConfigError
from mmhe.evaluation.engine import predict_proba
from mmhe.evaluation.fused_block import MultiFoldSTSTNet
from mmhe.evaluation.scaling import missing_rows, prior
from mmhe.evaluation.settings import TrainSettings, fold_seeds, seeded_torch
from mmhe.evaluation.splits import Fold, inner_validation_split
from mmhe.models import STSTNet

_PERMUTATION_KEY = 0x5EED  # separates the shared epoch permutations from fold seeds
_SAVE_CONV_BYTES = 2**30  # keep first-layer activations for the backward pass below this


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
            "n_validation_used": int(validation[i].sum()),
            "seconds": seconds,
            "folds_in_group": n_folds,
            "device": "cpu",
            "fits": _fit_records(member[i], validation[i], mean[i], settings),
        }
        if settings.early_stopping and np.isfinite(best_loss[i]):
            info["best_validation_loss"] = float(best_loss[i])
        results.append((proba, info))
    return results


def _fit_records(
    member: np.ndarray, validation: np.ndarray, mean: np.ndarray, settings: TrainSettings
) -> list[dict[str, Any]]:
    """A fold's fitted pieces with the sample indices into X they saw (for
    `mmhe.evaluation.audit.audit_fits`): the z-score folded into the first convolution
    (its per-channel mean), the model, and the early-stopping validation rows."""
    rows = np.flatnonzero(member)
    fits: list[dict[str, Any]] = []
    if settings.normalize:
        fits.append(
            {
                "what": "z-score (and NaN imputation with its mean)",
                "modality": None,
                "rows": rows,
                "mean": np.asarray(mean, dtype=np.float64),
                "axis": 1,
                "global": True,
            }
        )
    fits.append({"what": "model", "rows": rows, "global": True})
    if settings.early_stopping:
        fits.append(
            {
                "what": "early stopping (validation loss)",
                "rows": np.flatnonzero(validation),
                "global": True,
            }
        )
    return fits


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
