"""Inputs of the training engine: arrays or dicts of modalities, missing samples, z-scoring.

An input is an array (N, ...) or, for fusion models, a dict {modality: (N, ...)}; a sample
whose values are all NaN lacks that input. Z-score statistics come from the training
rows of a fold only (`prepare`); a partial NaN becomes the training mean (0 after
scaling). Every fitted scaler leaves a fit record (`scaler_record`: its rows and its
mean) that `mmhe.evaluation.audit.audit_fits` checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmhe.errors import ConfigError
from mmhe.models import ModelSpec

ArrayInput = np.ndarray | Mapping[str, np.ndarray]


def n_samples(X: ArrayInput) -> int:
    """Number of samples of an array or of a dict of modalities (all must agree)."""
    if isinstance(X, Mapping):
        lengths = {len(v) for v in X.values()}
        if len(lengths) != 1:
            raise ConfigError(f"modalities have different numbers of samples: {lengths}")
        return lengths.pop()
    return len(X)


def take(X: ArrayInput, idx: np.ndarray) -> ArrayInput:
    """Rows ``idx`` of an array or of every modality of a dict."""
    if isinstance(X, Mapping):
        return {m: np.asarray(v)[idx] for m, v in X.items()}
    return np.asarray(X)[idx]


def missing_rows(x: np.ndarray) -> np.ndarray:
    """True for samples whose values are all NaN (the modality is missing)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return np.zeros(len(x), dtype=bool)
    return np.isnan(x.reshape(len(x), -1)).all(axis=1)


def presence(X: ArrayInput) -> np.ndarray:
    """(N, M) bool per modality for dict inputs, (N,) bool for an array: not all NaN."""
    if isinstance(X, Mapping):
        return np.stack([~missing_rows(v) for v in X.values()], axis=1)
    return ~missing_rows(X)


def _norm_axis_for(x: np.ndarray) -> int:
    return 1 if x.ndim == 4 else -1


@dataclass
class Scaler:
    """Z-score with statistics over every axis but ``axis``, fit on training rows."""

    axis: int | None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> Scaler:
        if self.axis is None or len(x) == 0:
            return self
        axes = tuple(a for a in range(x.ndim) if a != self.axis % x.ndim)
        if np.isnan(x).any():
            with np.errstate(invalid="ignore"):
                self.mean = np.nanmean(x, axis=axes, keepdims=True, dtype=np.float64)
                self.std = np.nanstd(x, axis=axes, keepdims=True, dtype=np.float64)
        else:  # the same statistics, without the copies the NaN-aware functions make
            self.mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
            centred = x - self.mean.astype(x.dtype)
            self.std = np.sqrt(np.square(centred).mean(axis=axes, keepdims=True, dtype=np.float64))
        self.mean = np.nan_to_num(self.mean)
        self.std = np.where(np.nan_to_num(self.std) > 1e-12, self.std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.mean is not None:
            x = (x - self.mean.astype(np.float32)) / self.std.astype(np.float32)
        return np.nan_to_num(x, nan=0.0, copy=False) if np.isnan(x).any() else x


@dataclass
class Prepared:
    """Normalised float32 inputs plus presence information and the scalers' fit records."""

    train: Any
    test: Any
    present_train: np.ndarray  # (n, M) bool for dict inputs, (n,) bool for arrays
    present_test: np.ndarray
    modalities: tuple[str, ...] | None
    fits: list[dict[str, Any]] = field(default_factory=list)


def scaler_record(scaler: Scaler, rows: np.ndarray, modality: str | None) -> dict[str, Any]:
    """What a z-score saw: its training rows (indices into the training input) and its
    mean, for `mmhe.evaluation.audit.audit_fits`."""
    return {
        "what": "z-score (and NaN imputation with its mean)",
        "modality": modality,
        "rows": np.asarray(rows, dtype=np.int64),
        "mean": None if scaler.mean is None else np.asarray(scaler.mean).reshape(-1),
        "axis": scaler.axis,
    }


def prepare(
    spec: ModelSpec,
    X_train: ArrayInput,
    X_test: ArrayInput,
    normalize: bool,
    fit_rows: np.ndarray,
) -> Prepared:
    """Z-score every input with statistics of the training rows ``fit_rows`` only (rows
    without that input left out); ``fits`` records each scaler (`scaler_record`)."""
    fit_mask = np.zeros(n_samples(X_train), dtype=bool)
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
            rows = np.flatnonzero(fit_mask & ~missing_rows(xtr))
            scaler = Scaler(axis).fit(xtr[rows])
            train[m], test[m] = scaler.transform(xtr), scaler.transform(xte)
            if scaler.mean is not None:
                fits.append(scaler_record(scaler, rows, m))
        return Prepared(train, test, presence(X_train), presence(X_test), modalities, fits)
    xtr, xte = np.asarray(X_train), np.asarray(X_test)
    rows = np.flatnonzero(fit_mask & ~missing_rows(xtr))
    scaler = Scaler(spec.norm_axis if normalize else None).fit(xtr[rows])
    return Prepared(
        scaler.transform(xtr),
        scaler.transform(xte),
        presence(X_train),
        presence(X_test),
        None,
        [scaler_record(scaler, rows, None)] if scaler.mean is not None else [],
    )


def to_torch(x: Any, present: np.ndarray | None = None) -> Any:
    """numpy -> torch (shared memory); a dict gets the "present" (N, M) float flags."""
    if isinstance(x, Mapping):
        out = {m: torch.from_numpy(np.ascontiguousarray(v)) for m, v in x.items()}
        out["present"] = torch.from_numpy(np.asarray(present, dtype=np.float32))
        return out
    return torch.from_numpy(np.ascontiguousarray(x))


def index_rows(x: Any, idx: np.ndarray | torch.Tensor) -> Any:
    """Rows ``idx`` of a tensor or of every tensor of a dict (on the tensors' device)."""
    if isinstance(x, Mapping):
        return {m: index_rows(v, idx) for m, v in x.items()}
    t = torch.as_tensor(idx, device=x.device)
    return x.index_select(0, t)


def prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class frequencies (n_classes,) of labels ``y``; uniform when ``y`` is empty."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(float)
    return counts / counts.sum() if counts.sum() else np.full(n_classes, 1.0 / n_classes)
