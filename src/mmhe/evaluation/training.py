"""Leakage-free, deterministic and fast training of the registry models on in-memory arrays.

`fit_predict` trains one model on one training set and returns class probabilities for
a test set; `run_folds` runs a whole protocol (a list of `Fold` from
`mmhe.evaluation.splits`) and returns one prediction row per test sample. The
store-driven runner (`mmhe benchmark`) calls `run_folds`.

Leakage rules enforced here
    - every fold is checked by `audit_split` before training (the audit is returned in
      ``predictions.attrs["audit"]``);
    - input normalisation (z-score, `ModelSpec.norm_axis`) is fit on the training part
      of each fold only; scikit-learn models scale inside their own pipeline;
    - fixed epochs by default; with ``early_stopping=True`` the stopping epoch is chosen
      on an inner validation split of TRAINING participants
      (`inner_validation_split`), never on the test fold;
    - a sample without input is never dropped from the test set: unimodal models give
      it the training class frequencies (``missing_input`` column), fusion models apply
      their documented missing-modality policy.

Determinism
    Every fold has its own seeds, derived from (``seed``, fold index) with
    `numpy.random.SeedSequence`: one for the model initialisation (a forked torch RNG,
    so the global RNG is untouched), one numpy Generator for the batch order, one for
    dropout. Results therefore do not depend on which other folds run, in which order,
    in which process, or how folds are grouped. ``torch.use_deterministic_algorithms``
    is switched on (warn-only) while training.

Speed: the multi-fold engine for STSTNet (``engine="multifold"``, the default for it)
    A plain loop trains one fold after another; each step pushes a 256-sample batch
    through a tiny network, so time goes into framework overhead and into many passes
    over 28 x 28 x 16 activation maps. The multi-fold engine instead trains F folds at
    once as one `MultiFoldSTSTNet`:

    1. Shared rows. Each epoch draws ONE random permutation of all samples (seeded by
       epoch). Fold f's batches are consecutive runs of ``batch_size`` of ITS training
       samples in that order. Restricting a uniform random permutation to a subset gives
       a uniform random permutation of the subset, so every fold sees exactly the batch
       distribution of a plain shuffled loop (same batch size, same number of steps per
       epoch). At step b the folds' batches lie in one window of the permuted table
       (about batch_size / training fraction rows); the first convolution runs once on
       that window for all F x 16 output channels, and a row mask (W, F) restricts every
       fold's statistics, loss and gradient to its own rows.
    2. A fused first block (`mmhe.models.visual._ConvReluBnMaxPool`) computes conv ->
       ReLU -> BatchNorm -> max-pool with the same mathematics but far fewer passes over
       memory: the pool commutes with the per-channel monotone ReLU/BatchNorm, and the
       BatchNorm backward is written in closed form. Per-fold input normalisation is
       folded into the convolution exactly (including zero padding).
    3. Exactly per-fold optimisation: the loss is the sum of the folds' mean losses, so
       each fold's parameters get their own gradient; Adam is element-wise, and
       `_StackedAdam` keeps a step count per fold and skips folds without a batch at a
       step (their fewer batches per epoch), as separate optimisers would.
    4. Dask: groups of folds are tasks; with a ``distributed.Client`` they run on its
       workers (one single-threaded process per core is the fastest layout: no
       intra-op threading of small tensors), without one they run in this process.
       Inside workers `tune_allocator` undoes the memory-trimming setting Dask gives
       them, which otherwise costs a factor 3-4 in page faults.

    Per-fold results are the same in distribution as training the folds separately
    (same initialisation scheme: each fold's STSTNet is built by the ordinary module
    constructor; same optimiser; same batch distribution; independent dropout masks).
    One training step equals the plain module's step to float precision (tested), and a
    fold gives the same predictions whether trained alone or in a group (tested).
    ``benchmarks/bench_training.py`` measures the speed-up against a plain loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torch.utils.deterministic

from mmhe.errors import ConfigError
from mmhe.evaluation.audit import audit_fits
from mmhe.evaluation.device import resolve_device, to_device
from mmhe.evaluation.splits import Fold, audit_split, group_kfold, inner_validation_split
from mmhe.models import (
    LateFusion,
    ModelSpec,
    MultiFoldSTSTNet,
    StackingFusion,
    STSTNet,
    TrainingDefaults,
    build_model,
    ensure_registered,
    model_spec,
)

ArrayInput = np.ndarray | Mapping[str, np.ndarray]

_PERMUTATION_KEY = 0x5EED  # separates the shared epoch permutations from fold seeds
_SAVE_CONV_BYTES = 2**30  # keep first-layer activations for the backward pass below this


# ----------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainSettings:
    """Resolved training settings of one run (model defaults overridden by arguments)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    seed: int = 0
    early_stopping: bool = False
    val_fraction: float = 0.2
    patience: int = 20
    normalize: bool = True
    model_kw: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # epochs/batch_size/lr given
    device: str = "cpu"  # where torch models train (`resolve_device`); data stay on CPU


def resolve_settings(
    model_name: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    early_stopping: bool = False,
    val_fraction: float = 0.2,
    patience: int = 20,
    normalize: bool = True,
    model_kw: Mapping[str, Any] | None = None,
    device: str | torch.device | None = "cpu",
) -> TrainSettings:
    """The model's published defaults (`ModelSpec.defaults`) with the given overrides.

    device : "auto", "cpu", "cuda" or "cuda:N" (`mmhe.evaluation.device.resolve_device`).
    """
    d: TrainingDefaults = model_spec(model_name).defaults
    settings = TrainSettings(
        epochs=d.epochs if epochs is None else int(epochs),
        batch_size=d.batch_size if batch_size is None else int(batch_size),
        lr=d.lr if lr is None else float(lr),
        optimizer=d.optimizer,
        momentum=d.momentum,
        weight_decay=d.weight_decay,
        seed=int(seed),
        early_stopping=bool(early_stopping),
        val_fraction=float(val_fraction),
        patience=int(patience),
        normalize=bool(normalize),
        model_kw=dict(model_kw or {}),
        overrides={
            key: value
            for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr))
            if value is not None
        },
        device=str(resolve_device(device)),
    )
    if settings.epochs < 1 or settings.batch_size < 1 or settings.lr <= 0:
        raise ConfigError(
            f"need epochs >= 1, batch_size >= 1 and lr > 0, got {settings.epochs}, "
            f"{settings.batch_size}, {settings.lr}"
        )
    return settings


def fold_seeds(seed: int, fold_index: int) -> tuple[int, int, int, int]:
    """(torch init seed, batch-order seed, dropout seed, validation-split seed) of a fold."""
    state = np.random.SeedSequence([int(seed), int(fold_index)]).generate_state(4, np.uint32)
    return tuple(int(s) for s in state)  # type: ignore[return-value]


@contextmanager
def _seeded_torch(seed: int, device: str = "cpu") -> Iterator[None]:
    """Fork torch's CPU RNG (and the CUDA device's when training there), seed them, switch
    deterministic algorithms on; restore after.

    The NaN-filling of fresh tensors that deterministic mode adds by default is switched
    off: it only helps to find reads of uninitialised memory and costs a full extra pass
    over every allocation (15x slower training of small networks).
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    where = torch.device(device)
    cuda = [where.index if where.index is not None else 0] if where.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.manual_seed(seed)  # seeds the CPU and every CUDA device
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
            torch.utils.deterministic.fill_uninitialized_memory = was_filling


# --------------------------------------------------------------- input handling


def _n_samples(X: ArrayInput) -> int:
    if isinstance(X, Mapping):
        lengths = {len(v) for v in X.values()}
        if len(lengths) != 1:
            raise ConfigError(f"modalities have different numbers of samples: {lengths}")
        return lengths.pop()
    return len(X)


def _take(X: ArrayInput, idx: np.ndarray) -> ArrayInput:
    if isinstance(X, Mapping):
        return {m: np.asarray(v)[idx] for m, v in X.items()}
    return np.asarray(X)[idx]


def _missing_rows(x: np.ndarray) -> np.ndarray:
    """True for samples whose values are all NaN (the modality is missing)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return np.zeros(len(x), dtype=bool)
    return np.isnan(x.reshape(len(x), -1)).all(axis=1)


def _norm_axis_for(x: np.ndarray) -> int:
    return 1 if x.ndim == 4 else -1


@dataclass
class _Scaler:
    """Z-score with statistics over every axis but ``axis``, fit on training rows."""

    axis: int | None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> _Scaler:
        if self.axis is None or len(x) == 0:
            return self
        axes = tuple(a for a in range(x.ndim) if a != self.axis % x.ndim)
        with np.errstate(invalid="ignore"):
            self.mean = np.nanmean(x, axis=axes, keepdims=True, dtype=np.float64)
            self.std = np.nanstd(x, axis=axes, keepdims=True, dtype=np.float64)
        self.mean = np.nan_to_num(self.mean)
        self.std = np.where(np.nan_to_num(self.std) > 1e-12, self.std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.mean is not None:
            x = ((x - self.mean) / self.std).astype(np.float32)
        return np.nan_to_num(x, nan=0.0)  # partial NaNs -> the training mean


@dataclass
class _Prepared:
    """Normalised float32 inputs plus presence information and the scalers' fit records."""

    train: Any
    test: Any
    present_train: np.ndarray  # (n, M) bool for dict inputs, (n,) bool for arrays
    present_test: np.ndarray
    modalities: tuple[str, ...] | None
    fits: list[dict[str, Any]] = field(default_factory=list)


def _scaler_record(scaler: _Scaler, rows: np.ndarray, modality: str | None) -> dict[str, Any]:
    """What a z-score saw: its training rows and its statistics (for `mmhe.evaluation.audit`)."""
    return {
        "what": "z-score (and NaN imputation with its mean)",
        "modality": modality,
        "rows": np.asarray(rows, dtype=np.int64),
        "mean": None if scaler.mean is None else np.asarray(scaler.mean).reshape(-1),
        "axis": scaler.axis,
    }


def _presence(X: ArrayInput) -> np.ndarray:
    """(N, M) bool per modality for dict inputs, (N,) bool for an array: not all NaN."""
    if isinstance(X, Mapping):
        return np.stack([~_missing_rows(v) for v in X.values()], axis=1)
    return ~_missing_rows(X)


def _prepare(
    spec: ModelSpec,
    X_train: ArrayInput,
    X_test: ArrayInput,
    normalize: bool,
    fit_rows: np.ndarray,
) -> _Prepared:
    """Z-score every input with statistics of the training rows ``fit_rows`` only."""
    fit_mask = np.zeros(_n_samples(X_train), dtype=bool)
    fit_mask[fit_rows] = True
    if isinstance(X_train, Mapping):
        if not isinstance(X_test, Mapping) or set(X_test) != set(X_train):
            raise ConfigError("train and test inputs must have the same modalities")
        modalities = tuple(X_train)
        train, test = {}, {}
        fits: list[dict[str, Any]] = []
        for m in modalities:
            xtr, xte = np.asarray(X_train[m]), np.asarray(X_test[m])
            axis = _norm_axis_for(xtr) if normalize and spec.norm_axis is not None else None
            rows = np.flatnonzero(fit_mask & ~_missing_rows(xtr))
            scaler = _Scaler(axis).fit(xtr[rows])
            train[m], test[m] = scaler.transform(xtr), scaler.transform(xte)
            if scaler.mean is not None:
                fits.append(_scaler_record(scaler, rows, m))
        return _Prepared(train, test, _presence(X_train), _presence(X_test), modalities, fits)
    xtr, xte = np.asarray(X_train), np.asarray(X_test)
    rows = np.flatnonzero(fit_mask & ~_missing_rows(xtr))
    scaler = _Scaler(spec.norm_axis if normalize else None).fit(xtr[rows])
    return _Prepared(
        scaler.transform(xtr),
        scaler.transform(xte),
        _presence(X_train),
        _presence(X_test),
        None,
        [_scaler_record(scaler, rows, None)] if scaler.mean is not None else [],
    )


def _to_torch(x: Any, present: np.ndarray | None = None) -> Any:
    if isinstance(x, Mapping):
        out = {m: torch.from_numpy(np.ascontiguousarray(v)) for m, v in x.items()}
        out["present"] = torch.from_numpy(np.asarray(present, dtype=np.float32))
        return out
    return torch.from_numpy(np.ascontiguousarray(x))


def _index(x: Any, idx: np.ndarray) -> Any:
    t = torch.from_numpy(idx)
    if isinstance(x, Mapping):
        return {m: v.index_select(0, t) for m, v in x.items()}
    return x.index_select(0, t)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a final batch of one sample joins the previous
    one (BatchNorm cannot train on a single sample)."""
    parts = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2] = np.concatenate([parts[-2], parts.pop()])
    return parts


# --------------------------------------------------------------- torch training


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = model.parameters()
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    raise ConfigError(f"unknown optimizer {settings.optimizer!r}")


def _loss(model: torch.nn.Module, xb: Any, yb: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "training_loss"):
        return model.training_loss(xb, yb)
    return F.cross_entropy(model(xb), yb)


@torch.no_grad()
def _predict(
    model: torch.nn.Module, x: Any, n: int, batch_size: int = 1024, device: str = "cpu"
) -> np.ndarray:
    """Class probabilities (n, K) float64 on the CPU; batches go to ``device``."""
    model.eval()
    out = []
    where = torch.device(device)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        logits = model(to_device(_index(x, idx), where))
        out.append(torch.softmax(logits, dim=1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _train_torch(
    model_name: str,
    n_classes: int,
    x_fit: Any,
    y_fit: np.ndarray,
    x_val: Any | None,
    y_val: np.ndarray | None,
    x_test: Any,
    n_test: int,
    shape: Any,
    settings: TrainSettings,
    seeds: tuple[int, int, int, int],
) -> tuple[np.ndarray, dict[str, Any]]:
    spec = model_spec(model_name)
    torch_seed, order_seed, _, _ = seeds
    device = torch.device(settings.device)
    with _seeded_torch(torch_seed, settings.device):
        kwargs = {"n_classes": n_classes, **spec.shape_kwargs(shape), **settings.model_kw}
        model = build_model(model_name, **kwargs).to(device)
        _initialise_lazy(model, x_fit, device)
        optimizer = _optimizer(model, settings)
        rng = np.random.default_rng(order_seed)
        y_fit_t = torch.from_numpy(np.asarray(y_fit, dtype=np.int64))
        n_fit = len(y_fit)
        best_loss, best_state, best_epoch, epochs_run = math.inf, None, 0, 0
        for epoch in range(settings.epochs):
            model.train()
            for idx in _batches(rng.permutation(n_fit), settings.batch_size):
                rows = torch.from_numpy(idx)
                loss = _loss(model, to_device(_index(x_fit, idx), device), y_fit_t[rows].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if hasattr(model, "apply_constraints"):
                    model.apply_constraints()
            epochs_run = epoch + 1
            if x_val is not None and y_val is not None and len(y_val):
                proba = _predict(model, x_val, len(y_val), device=settings.device)
                val_loss = float(
                    -np.log(np.clip(proba[np.arange(len(y_val)), y_val], 1e-12, None)).mean()
                )
                if val_loss < best_loss - 1e-9:
                    best_loss, best_epoch = val_loss, epoch + 1
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
                elif epoch + 1 - best_epoch >= settings.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        proba = _predict(model, x_test, n_test, device=settings.device)
    info = {
        "epochs_trained": epochs_run,
        "best_epoch": best_epoch or epochs_run,
        "n_validation_used": 0 if y_val is None else len(y_val),
    }
    if best_state is not None:
        info["best_validation_loss"] = best_loss
    return proba, info


def _pipeline_scaler_mean(model: Any) -> np.ndarray | None:
    """The fitted mean of the first scaler in a scikit-learn model's pipeline (a user's
    pipeline may nest it or have none); None when there is none."""
    pipeline = getattr(model, "pipeline", None)
    for step in getattr(pipeline, "steps", []):
        estimator = step[1]
        if hasattr(estimator, "steps"):  # a nested pipeline
            estimator = estimator.steps[0][1]
        if hasattr(estimator, "mean_") and estimator.mean_ is not None:
            return np.asarray(estimator.mean_, dtype=np.float64).reshape(-1)
    return None


def _initialise_lazy(model: torch.nn.Module, x_fit: Any, device: torch.device) -> None:
    """Run one forward pass without gradients when the model has lazy modules (e.g.
    `torch.nn.LazyLinear` in a registered model), so the optimiser sees real parameters."""
    from torch.nn.modules.lazy import LazyModuleMixin

    if any(isinstance(m, LazyModuleMixin) for m in model.modules()):
        with torch.no_grad():
            model(to_device(_index(x_fit, np.arange(min(2, _n_rows(x_fit)))), device))


def _n_rows(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _product_kind(spec: ModelSpec, k: int, shape: Any, settings: TrainSettings) -> str:
    """ "torch" or "sklearn" for a registered factory of kind "auto": build it once."""
    if spec.kind != "auto":
        return spec.kind
    kwargs = {"n_classes": k, **spec.shape_kwargs(shape), **settings.model_kw}
    with _seeded_torch(0):
        product = build_model(spec.name, **kwargs)
    return "torch" if isinstance(product, torch.nn.Module) else "sklearn"


# ------------------------------------------------------------------- fit_predict


@dataclass
class FitResult:
    """Probabilities (n_test, n_classes) of a trained model and facts about the fit."""

    proba: np.ndarray
    info: dict[str, Any]

    @property
    def pred(self) -> np.ndarray:
        """Most probable class per test sample."""
        return self.proba.argmax(axis=1)


def _prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(float)
    return counts / counts.sum() if counts.sum() else np.full(n_classes, 1.0 / n_classes)


def fit_predict(
    model_name: str,
    X_train: ArrayInput,
    y_train: np.ndarray,
    X_test: ArrayInput,
    *,
    n_classes: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    fold_index: int = 0,
    groups_train: np.ndarray | None = None,
    early_stopping: bool = False,
    val_fraction: float = 0.2,
    patience: int = 20,
    normalize: bool = True,
    model_kw: Mapping[str, Any] | None = None,
    settings: TrainSettings | None = None,
    device: str | torch.device | None = "cpu",
) -> FitResult:
    """Train registry model ``model_name`` on (X_train, y_train); probabilities for X_test.

    X_train, X_test : arrays (N, ...) in the model's input layout (`mmhe.models`), or
        for fusion models dicts {modality: array}; a sample whose values are all NaN
        lacks that input.
    y_train : (N,) int class indices 0..n_classes-1.
    epochs, batch_size, lr : override the model's published defaults.
    seed, fold_index : the fold's seeds derive from both (see `fold_seeds`).
    groups_train : (N,) training participants; needed for early stopping (inner
        validation participants) and stacking (inner folds).
    device : where a torch model trains ("auto", "cpu", "cuda"; ignored when
        ``settings`` is given, which carries its own).
    Returns `FitResult` with ``proba`` (n_test, n_classes).
    """
    spec = model_spec(model_name)
    if settings is None:
        settings = resolve_settings(
            model_name,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            early_stopping=early_stopping,
            val_fraction=val_fraction,
            patience=patience,
            normalize=normalize,
            model_kw=model_kw,
            device=device,
        )
    y_train = np.asarray(y_train, dtype=np.int64)
    n_train, n_test = _n_samples(X_train), _n_samples(X_test)
    if y_train.shape != (n_train,):
        raise ConfigError(f"y_train has shape {y_train.shape}, expected ({n_train},)")
    k = int(n_classes if n_classes is not None else y_train.max() + 1)
    if y_train.size and (y_train.min() < 0 or y_train.max() >= k):
        raise ConfigError(f"labels must be in 0..{k - 1}")
    started = time.perf_counter()
    seeds = fold_seeds(settings.seed, fold_index)
    prior = _prior(y_train, k)
    if spec.kind == "ensemble":
        proba, info = _fit_predict_ensemble(
            model_name, X_train, y_train, X_test, groups_train, k, settings, fold_index
        )
    else:
        multimodal = isinstance(X_train, Mapping)
        if spec.input == "multimodal" and not multimodal:
            raise ConfigError(f"{model_name} expects a dict of modalities")
        if multimodal and spec.input != "multimodal":
            raise ConfigError(f"{model_name} takes one array, not a dict of modalities")
        present_train, present_test = _presence(X_train), _presence(X_test)
        usable = present_train.any(axis=1) if multimodal else present_train
        predictable = present_test.any(axis=1) if multimodal else present_test
        fit_rows = np.flatnonzero(usable)
        val_rows = np.zeros(0, dtype=np.int64)
        if settings.early_stopping:
            if groups_train is None:
                raise ConfigError("early stopping needs groups_train (validation participants)")
            groups_train = np.asarray(groups_train)
            fit_rows, val_rows = inner_validation_split(
                fit_rows, groups_train, settings.val_fraction, seeds[3]
            )
        prepared = _prepare(spec, X_train, X_test, settings.normalize, fit_rows)
        proba = np.tile(prior, (n_test, 1))
        info = {}
        fits = [*prepared.fits, {"what": "model", "rows": fit_rows}]
        if settings.early_stopping:
            fits.append({"what": "early stopping (validation loss)", "rows": val_rows})
        if fit_rows.size and predictable.any():
            test_rows = np.flatnonzero(predictable)
            shape = (
                {m: np.shape(v) for m, v in prepared.train.items()}
                if multimodal
                else np.shape(prepared.train)
            )
            if _product_kind(spec, k, shape, settings) == "sklearn":
                kwargs = {
                    "n_classes": k,
                    "seed": seeds[0],
                    **spec.shape_kwargs(shape),
                    **settings.model_kw,
                }
                model = build_model(model_name, **kwargs)
                model.fit(prepared.train[fit_rows], y_train[fit_rows])
                proba[test_rows] = model.predict_proba(prepared.test[test_rows])
                scaler_mean = _pipeline_scaler_mean(model)
                if scaler_mean is not None:
                    fits.append(
                        {
                            "what": "model's StandardScaler",
                            "modality": None,
                            "rows": fit_rows,
                            "mean": scaler_mean,
                            "axis": "flat",
                        }
                    )
            else:
                if multimodal:
                    x_all = _to_torch(prepared.train, prepared.present_train)
                    x_te = _to_torch(
                        _take(prepared.test, test_rows), prepared.present_test[test_rows]
                    )
                else:
                    x_all = _to_torch(prepared.train)
                    x_te = _to_torch(prepared.test[test_rows])
                proba[test_rows], info = _train_torch(
                    model_name,
                    k,
                    _index(x_all, fit_rows),
                    y_train[fit_rows],
                    _index(x_all, val_rows) if val_rows.size else None,
                    y_train[val_rows] if val_rows.size else None,
                    x_te,
                    test_rows.size,
                    shape,
                    settings,
                    seeds,
                )
        info |= {
            "n_fit": int(fit_rows.size),
            "n_validation": int(val_rows.size),
            "n_train_without_input": int((~usable).sum()),
            "n_test_without_input": int((~predictable).sum()),
            "fits": fits,
        }
        info["missing_input"] = ~predictable
    info["seconds"] = time.perf_counter() - started
    return FitResult(np.asarray(proba, dtype=np.float64), info)


def _fit_predict_ensemble(
    model_name: str,
    X_train: ArrayInput,
    y_train: np.ndarray,
    X_test: ArrayInput,
    groups_train: np.ndarray | None,
    n_classes: int,
    settings: TrainSettings,
    fold_index: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    if not isinstance(X_train, Mapping) or not isinstance(X_test, Mapping):
        raise ConfigError(f"{model_name} expects dicts {{modality: array}}")
    kw = dict(settings.model_kw)
    if "members" not in kw:
        kw["modalities"] = tuple(X_train)
    if model_name == "stacking":
        kw.setdefault("seed", settings.seed)
    ensemble: LateFusion = build_model(model_name, n_classes=n_classes, **kw)
    missing = [m for m in ensemble.modalities if m not in X_train]
    if missing:
        raise ConfigError(f"{model_name}: no input for member modality {missing}")
    present_tr = np.stack([~_missing_rows(X_train[m]) for m in ensemble.modalities], 1)
    present_te = np.stack([~_missing_rows(X_test[m]) for m in ensemble.modalities], 1)

    fits: list[dict[str, Any]] = []

    def member_proba(m: str, tr: np.ndarray, te_x: np.ndarray, salt: int) -> np.ndarray:
        if tr.size == 0:  # no training sample has this modality: it carries no information
            return np.full((len(te_x), n_classes), 1.0 / n_classes)
        member = ensemble.members[m]
        member_settings = resolve_settings(
            member,
            **settings.overrides,
            seed=settings.seed,
            early_stopping=settings.early_stopping,
            val_fraction=settings.val_fraction,
            patience=settings.patience,
            normalize=settings.normalize,
            model_kw=ensemble.member_kw.get(m),
            device=settings.device,
        )
        result = fit_predict(
            member,
            np.asarray(X_train[m])[tr],
            y_train[tr],
            te_x,
            n_classes=n_classes,
            fold_index=fold_index * 1009 + salt,
            settings=member_settings,
            groups_train=None if groups_train is None else np.asarray(groups_train)[tr],
        )
        for record in result.info.get("fits", []):  # member rows -> rows of X_train
            fits.append(
                {
                    **record,
                    "what": f"{member} member: {record['what']}",
                    "modality": m,
                    "rows": tr[np.asarray(record["rows"], dtype=np.int64)],
                }
            )
        return result.proba

    test_proba = {}
    for i, m in enumerate(ensemble.modalities):
        test_proba[m] = member_proba(m, np.flatnonzero(present_tr[:, i]), np.asarray(X_test[m]), i)
        if not present_tr[:, i].any():
            present_te[:, i] = False
    info: dict[str, Any] = {"members": dict(ensemble.members)}
    if isinstance(ensemble, StackingFusion):
        if groups_train is None:
            raise ConfigError("stacking needs groups_train to build inner folds of participants")
        groups_train = np.asarray(groups_train)
        oof = {m: np.full((len(y_train), n_classes), 1.0 / n_classes) for m in ensemble.modalities}
        inner = list(group_kfold(groups_train, ensemble.inner_folds, settings.seed + fold_index))
        for inner_fold in inner:
            for i, m in enumerate(ensemble.modalities):
                tr = inner_fold.train_idx[present_tr[inner_fold.train_idx, i]]
                te = inner_fold.test_idx
                oof[m][te] = member_proba(
                    m, tr, np.asarray(X_train[m])[te], 100 + 10 * inner_fold.index + i
                )
        ensemble.fit_meta(oof, present_tr, y_train)
        info["inner_folds"] = len(inner)
        fits.append({"what": "stacking meta-learner", "rows": np.arange(len(y_train))})
    proba = ensemble.combine(test_proba, present_te, _prior(y_train, n_classes))
    info["missing_input"] = ~present_te.any(axis=1)
    info["fits"] = fits
    return proba, info


# --------------------------------------------------------- multi-fold STSTNet


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


def _train_multifold_ststnet(
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
    usable = ~_missing_rows(X)
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
        with _seeded_torch(seeds[i][0]):
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
    with _seeded_torch(seeds[0][0]):
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
        proba = np.tile(_prior(y[fold.train_idx], n_classes), (len(fold.test_idx), 1))
        if test_usable.any():
            x_t = torch.from_numpy(np.nan_to_num(x_test[test_usable]).astype(np.float32))
            proba[test_usable] = _predict(fitted[i], x_t, len(x_t))
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
            "fits": (  # sample indices into X (global), for mmhe.evaluation.audit
                [
                    {
                        "what": "z-score (and NaN imputation with its mean)",
                        "modality": None,
                        "rows": np.flatnonzero(member[i]),
                        "mean": mean[i],
                        "axis": 1,
                        "global": True,
                    }
                ]
                if settings.normalize
                else []
            )
            + [{"what": "model", "rows": np.flatnonzero(member[i]), "global": True}]
            + (
                [
                    {
                        "what": "early stopping (validation loss)",
                        "rows": np.flatnonzero(validation[i]),
                        "global": True,
                    }
                ]
                if settings.early_stopping
                else []
            ),
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
        proba = _predict(fitted[i], x, len(rows))
        loss = float(-np.log(np.clip(proba[np.arange(len(rows)), y[rows]], 1e-12, None)).mean())
        if loss < best_loss[i] - 1e-9:
            best_loss[i], best_epoch[i] = loss, epoch + 1
            for key, value in state.items():
                best_state[key][i] = value[i]
        elif epoch + 1 - best_epoch[i] >= patience:
            stopped[i] = True


# -------------------------------------------------------------------- run_folds


def tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse in this process (Linux; no-op elsewhere).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins
    glibc's mmap threshold at 128 KiB: every activation tensor then comes from a fresh
    ``mmap`` and is paid again in page faults, which makes training 3-4x slower. This
    raises the mmap threshold to 32 MiB and the trim threshold to 512 MiB (the process
    may keep up to that much freed memory). `run_folds` calls it inside Dask workers.
    Returns True when the settings were applied.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(
            libc.mallopt(m_mmap_threshold, 32 * 2**20)
            and libc.mallopt(m_trim_threshold, 512 * 2**20)
        )
    except (OSError, AttributeError, TypeError):
        return False


def _run_fold_group(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Sequence[Fold],
    n_classes: int,
    settings: TrainSettings,
    engine: str,
    threads: int | None = None,
    registered: ModelSpec | None = None,
) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
    """Train and predict a group of folds (runs in-process or as one Dask task).

    registered : the spec of a user-registered model, registered here first when this
        runs in a Dask worker that has never seen it.
    """
    if registered is not None:
        ensure_registered(registered)
    previous = torch.get_num_threads()
    if threads is None:
        try:
            from distributed import get_worker

            threads = int(get_worker().state.nthreads)
            tune_allocator()
        except (ImportError, ValueError):
            threads = None
    if threads:
        torch.set_num_threads(threads)
    try:
        if engine == "multifold":
            results = _train_multifold_ststnet(
                np.asarray(X, dtype=np.float32), y, groups, folds, n_classes, settings
            )
            return [(f.index, proba, info) for f, (proba, info) in zip(folds, results, strict=True)]
        out = []
        for fold in folds:
            result = fit_predict(
                model_name,
                _take(X, fold.train_idx),
                y[fold.train_idx],
                _take(X, fold.test_idx),
                n_classes=n_classes,
                fold_index=fold.index,
                groups_train=groups[fold.train_idx],
                settings=settings,
            )
            result.info["fits"] = [
                _to_global(record, fold.train_idx) for record in result.info.get("fits", [])
            ]
            out.append((fold.index, result.proba, result.info))
        return out
    finally:
        torch.set_num_threads(previous)


def _to_global(record: dict[str, Any], train_idx: np.ndarray) -> dict[str, Any]:
    """A fit record with rows of the fold's training arrays -> sample indices into X
    (-1 for a row that is not one of the fold's training samples)."""
    rows = np.asarray(record["rows"], dtype=np.int64)
    inside = (rows >= 0) & (rows < train_idx.size)
    mapped = np.where(inside, train_idx[np.clip(rows, 0, max(train_idx.size - 1, 0))], -1)
    return {**record, "rows": mapped, "global": True}


def _fold_table(
    fold: Fold,
    proba: np.ndarray,
    info: dict[str, Any],
    y: np.ndarray,
    groups: np.ndarray,
    class_names: Sequence[str],
    model_name: str,
) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "participant": groups[fold.test_idx],
            "sample": fold.test_idx,
            "y_true": y[fold.test_idx],
            "y_pred": proba.argmax(axis=1),
        }
    )
    names = np.asarray([str(c) for c in class_names], dtype=object)
    table["true_class"] = names[table["y_true"].to_numpy()]
    table["pred_class"] = names[table["y_pred"].to_numpy()]
    for c, name in enumerate(class_names):
        table[f"prob_{name}"] = proba[:, c]
    table["missing_input"] = np.asarray(info.get("missing_input", np.zeros(len(table), bool)))
    table["fold"] = fold.index
    table["model"] = model_name
    return table


def _protocol_units(
    groups: np.ndarray,
    trials: np.ndarray | None,
    stimuli: np.ndarray | None,
    participants_disjoint: bool | None,
) -> dict[str, np.ndarray]:
    """The labels a protocol keeps apart (as `audit_split` decides them)."""
    if participants_disjoint is None:
        participants_disjoint = trials is None and stimuli is None
    units: dict[str, np.ndarray] = {}
    if participants_disjoint:
        units["participants"] = groups
    if trials is not None:
        units["trials"] = np.asarray(trials)
    if stimuli is not None:
        units["stimuli"] = np.asarray(stimuli)
    return units


def run_folds(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Sequence[Fold],
    *,
    n_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    early_stopping: bool = False,
    val_fraction: float = 0.2,
    patience: int = 20,
    normalize: bool = True,
    model_kw: Mapping[str, Any] | None = None,
    trials: np.ndarray | None = None,
    stimuli: np.ndarray | None = None,
    participants_disjoint: bool | None = None,
    engine: str = "auto",
    folds_per_group: int | None = None,
    client: Any = None,
    on_fold_done: Callable[[int, pd.DataFrame, dict[str, Any]], None] | None = None,
    device: str | torch.device | None = "cpu",
) -> pd.DataFrame:
    """Train and test ``model_name`` on every fold; one prediction row per test sample.

    X : (N, ...) array or {modality: (N, ...)} dict; y : (N,) int labels; groups : (N,)
        participants. folds : `Fold` list from `mmhe.evaluation.splits` (audited first;
        pass ``trials`` for trial-grouped protocols, where participants may be shared,
        and ``stimuli`` for stimulus-grouped ones; see `audit_split`).
    engine : "auto" (multi-fold for STSTNet on an array, else sequential),
        "multifold" or "sequential".
    folds_per_group : folds trained together in one task (multi-fold engine; default
        4 per task) or one after another in one task (sequential; default 1).
    client : None runs every group in this process; a ``distributed.Client`` runs the
        groups as tasks on its workers (inputs are scattered once).
    on_fold_done : called with (fold index, its prediction rows, its info) as soon as
        the fold's group finishes (for incremental saving and resuming). The info holds
        ``fit_audit``: `mmhe.evaluation.audit.audit_fits` of every fitted piece.
    device : where torch models train: "auto" (CUDA when present), "cpu", "cuda".
        The multi-fold engine runs on the CPU; with a GPU, "auto" picks the sequential
        engine instead.

    Returns a DataFrame with columns participant, sample, y_true, y_pred, true_class,
    pred_class (class names), prob_<class> ..., missing_input, fold, model, sorted by
    fold then sample; ``attrs`` holds
    "audit" (per fold: the `audit_split` record with the fit audit under "fits"),
    "folds" (per-fold info: n_train,
    n_test, n_fit, n_validation, epochs_trained, seconds, ...), "settings", "engine"
    and "class_names".
    """
    folds = list(folds)
    if not folds:
        raise ConfigError("no folds to run")
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    n = _n_samples(X)
    if y.shape != (n,) or groups.shape != (n,):
        raise ConfigError(f"X has {n} samples but y has {y.shape} and groups {groups.shape}")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names for {k} classes")
    audit = [audit_split(f, groups, trials, stimuli, participants_disjoint) for f in folds]
    units = _protocol_units(groups, trials, stimuli, participants_disjoint)
    settings = resolve_settings(
        model_name,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        early_stopping=early_stopping,
        val_fraction=val_fraction,
        patience=patience,
        normalize=normalize,
        model_kw=model_kw,
        device=device,
    )
    on_cpu = torch.device(settings.device).type == "cpu"
    if engine == "auto":
        engine = (
            "multifold"
            if model_name == "ststnet" and not isinstance(X, Mapping) and on_cpu
            else "sequential"
        )
    if engine == "multifold" and not on_cpu:
        raise ConfigError(
            f"the multi-fold engine runs on the CPU only; use engine='sequential' on "
            f"{settings.device}"
        )
    if engine not in ("multifold", "sequential"):
        raise ConfigError(f"unknown engine {engine!r}; use 'auto', 'multifold' or 'sequential'")
    if engine == "multifold" and model_name != "ststnet":
        raise ConfigError("the multi-fold engine implements STSTNet only; use engine='sequential'")
    size = folds_per_group or (4 if engine == "multifold" else 1)
    chunks = [folds[i : i + size] for i in range(0, len(folds), size)]
    by_index = {f.index: f for f in folds}
    spec = model_spec(model_name)
    registered = spec if spec.registered else None
    tables: dict[int, pd.DataFrame] = {}
    infos: dict[int, dict[str, Any]] = {}

    def collect(results: list[tuple[int, np.ndarray, dict[str, Any]]]) -> None:
        for index, proba, info in results:
            fold = by_index[index]
            table = _fold_table(fold, proba, info, y, groups, names, model_name)
            fit_audit = audit_fits(fold, info.get("fits", []), X, groups, units)
            info = {key: v for key, v in info.items() if key not in ("missing_input", "fits")}
            info["fit_audit"] = fit_audit
            info |= {
                "fold": index,
                "test_groups": list(fold.test_groups),
                "n_train": int(fold.train_idx.size),
                "n_test": int(fold.test_idx.size),
                "engine": engine,
                "device": settings.device,
            }
            tables[index], infos[index] = table, info
            if on_fold_done is not None:
                on_fold_done(index, table, info)

    if client is None:
        for chunk in chunks:
            collect(
                _run_fold_group(
                    model_name, X, y, groups, chunk, k, settings, engine, registered=registered
                )
            )
    else:
        from distributed import as_completed

        # hash=False: identical inputs of a later call must not share (and lose) these keys
        x_remote, y_remote, g_remote = client.scatter([X, y, groups], broadcast=True, hash=False)
        futures = [
            client.submit(
                _run_fold_group,
                model_name,
                x_remote,
                y_remote,
                g_remote,
                chunk,
                k,
                settings,
                engine,
                registered=registered,
                pure=False,
            )
            for chunk in chunks
        ]
        for future in as_completed(futures):
            collect(future.result())
    for record, fold in zip(audit, folds, strict=True):
        record["fits"] = infos[fold.index]["fit_audit"]
        record["passed"] = bool(record["passed"] and record["fits"]["passed"])
    predictions = pd.concat([tables[f.index] for f in folds], ignore_index=True)
    predictions = predictions.sort_values(["fold", "sample"], kind="stable").reset_index(drop=True)
    predictions.attrs = {
        "audit": audit,
        "folds": [infos[f.index] for f in folds],
        "settings": {
            "model": model_name,
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "optimizer": settings.optimizer,
            "seed": settings.seed,
            "early_stopping": settings.early_stopping,
            "normalize": settings.normalize,
            "model_kw": settings.model_kw,
            "folds_per_group": size,
            "device": settings.device,
        },
        "engine": engine,
        "class_names": names,
    }
    return predictions
