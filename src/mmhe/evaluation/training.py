"""Leakage-free, deterministic training of the registry models on in-memory arrays.

`fit_predict` trains one model on one training set and returns class probabilities for
a test set. `mmhe.evaluation.folds.run_folds` runs a whole protocol with the same pieces
(`prepare_fold`, `train_jobs`). Torch models train through `mmhe.evaluation.engine`
(many folds as one stacked model, any device); scikit-learn models fit their own
pipeline; late fusion and stacking train their members here.

Leakage rules enforced here
    - every fitted piece (z-score scalers, a scikit-learn model's own scaler, the model,
      the early-stopping validation set, a stacking meta-learner) leaves a fit record
      (``info["fits"]``) with the sample indices it saw and its statistics, which
      `mmhe.evaluation.folds.run_folds` audits per fold
      (`mmhe.evaluation.audit.audit_fits`);
    - input normalisation (z-score, `ModelSpec.norm_axis`) is fit on the training part
      of each fold only (`mmhe.evaluation.scaling`); scikit-learn models scale inside
      their own pipeline;
    - fixed epochs by default; with ``early_stopping=True`` the stopping epoch is chosen
      on an inner validation split of TRAINING participants
      (`inner_validation_split`), never on the test fold;
    - a sample without input is never dropped from the test set: unimodal models give
      it the training class frequencies (``missing_input`` column), fusion models apply
      their documented missing-modality policy.

Determinism
    Every fold has its own seeds, derived from (``seed``, fold index) with
    `numpy.random.SeedSequence` (`fold_seeds`): the model initialisation (a forked torch
    RNG, so the global RNG is untouched), the batch order, the dropout masks and the
    validation split. Results therefore do not depend on which other folds run, in which
    order, in which process, or how folds are grouped (to float rounding; tested).
    ``torch.use_deterministic_algorithms`` is switched on (warn-only) while training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import Any, ParamSpec

import numpy as np
import torch

from mmhe.errors import ConfigError
from mmhe.evaluation.device import resolve_device, to_device
from mmhe.evaluation.engine import Member, predict_proba, train_models
from mmhe.evaluation.scaling import (
    ArrayInput,
    index_rows,
    missing_rows,
    n_samples,
    prepare,
    presence,
    prior,
    take,
    to_torch,
)
from mmhe.evaluation.settings import (
    TrainSettings,
    fold_seeds,
    resolve_settings,
    seeded_torch,
    torch_threads,
)
from mmhe.evaluation.splits import group_kfold, inner_validation_split
from mmhe.models import (
    LateFusion,
    ModelSpec,
    StackingFusion,
    build_model,
    model_spec,
)

P = ParamSpec("P")


@dataclass
class FitResult:
    """Probabilities (n_test, n_classes) of a trained model and facts about the fit."""

    proba: np.ndarray
    info: dict[str, Any]

    @property
    def pred(self) -> np.ndarray:
        """Most probable class per test sample."""
        return self.proba.argmax(axis=1)


@dataclass
class FoldJob:
    """One fold ready to train: its engine member (None when nothing is left to train),
    its predictable test inputs, the prior-filled probabilities and its facts."""

    proba: np.ndarray
    info: dict[str, Any]
    member: Member | None = None
    x_test: Any = None
    test_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    shape: Any = None
    own_seconds: float = 0.0
    """Seconds spent on this fold alone: preparing it (and fitting a scikit-learn model)
    and predicting; `train_jobs` adds its share of its group's training time."""


def _records_own_seconds(prepare: Callable[P, FoldJob]) -> Callable[P, FoldJob]:
    """Set the returned job's `FoldJob.own_seconds` to the time ``prepare`` took."""

    @wraps(prepare)
    def timed(*args: P.args, **kwargs: P.kwargs) -> FoldJob:
        started = time.perf_counter()
        job = prepare(*args, **kwargs)
        job.own_seconds = time.perf_counter() - started
        return job

    return timed


@_records_own_seconds
def prepare_fold(
    model_name: str,
    X_train: ArrayInput,
    y_train: np.ndarray,
    X_test: ArrayInput,
    n_classes: int,
    settings: TrainSettings,
    fold_index: int,
    groups_train: np.ndarray | None,
) -> FoldJob:
    """Scale a fold's inputs on its training rows; scikit-learn models and ensembles are
    fit right here, torch models come back as an engine `Member` for `train_jobs`.

    ``info["fits"]`` records every fitted piece with rows of ``X_train`` (for
    `mmhe.evaluation.audit.audit_fits`; `mmhe.evaluation.folds` maps them to rows of X).
    """
    spec = model_spec(model_name)
    n_train, n_test = n_samples(X_train), n_samples(X_test)
    if y_train.shape != (n_train,):
        raise ConfigError(f"y_train has shape {y_train.shape}, expected ({n_train},)")
    if y_train.size and (y_train.min() < 0 or y_train.max() >= n_classes):
        raise ConfigError(f"labels must be in 0..{n_classes - 1}")
    seeds = fold_seeds(settings.seed, fold_index)
    if spec.kind == "ensemble":
        proba, info = _fit_predict_ensemble(
            model_name, X_train, y_train, X_test, groups_train, n_classes, settings, fold_index
        )
        return FoldJob(proba, info)
    multimodal = isinstance(X_train, Mapping)
    if spec.input == "multimodal" and not multimodal:
        raise ConfigError(f"{model_name} expects a dict of modalities")
    if multimodal and spec.input != "multimodal":
        raise ConfigError(f"{model_name} takes one array, not a dict of modalities")
    present_train, present_test = presence(X_train), presence(X_test)
    usable = present_train.any(axis=1) if multimodal else present_train
    predictable = present_test.any(axis=1) if multimodal else present_test
    fit_rows = np.flatnonzero(usable)
    val_rows = np.zeros(0, dtype=np.int64)
    if settings.early_stopping:
        if groups_train is None:
            raise ConfigError("early stopping needs groups_train (validation participants)")
        fit_rows, val_rows = inner_validation_split(
            fit_rows, np.asarray(groups_train), settings.val_fraction, seeds[3]
        )
    prepared = prepare(spec, X_train, X_test, settings.normalize, fit_rows)
    fits = [*prepared.fits, {"what": "model", "rows": fit_rows}]
    if settings.early_stopping:
        fits.append({"what": "early stopping (validation loss)", "rows": val_rows})
    job = FoldJob(
        np.tile(prior(y_train, n_classes), (n_test, 1)),
        {
            "n_fit": int(fit_rows.size),
            "n_validation": int(val_rows.size),
            "n_train_without_input": int((~usable).sum()),
            "n_test_without_input": int((~predictable).sum()),
            "fits": fits,
            "missing_input": ~predictable,
        },
    )
    if not (fit_rows.size and predictable.any()):
        return job
    job.test_rows = np.flatnonzero(predictable)
    job.shape = (
        {m: np.shape(v) for m, v in prepared.train.items()}
        if multimodal
        else np.shape(prepared.train)
    )
    if product_kind(spec, n_classes, job.shape, settings) == "sklearn":
        kwargs = {
            "n_classes": n_classes,
            "seed": seeds[0],
            **spec.shape_kwargs(job.shape),
            **settings.model_kw,
        }
        model = build_model(model_name, **kwargs)
        model.fit(prepared.train[fit_rows], y_train[fit_rows])
        job.proba[job.test_rows] = model.predict_proba(prepared.test[job.test_rows])
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
        return job
    if multimodal:
        x_all = to_torch(prepared.train, prepared.present_train)
        job.x_test = to_torch(
            take(prepared.test, job.test_rows), prepared.present_test[job.test_rows]
        )
    else:
        x_all = to_torch(prepared.train)
        job.x_test = to_torch(prepared.test[job.test_rows])
    y_all = torch.from_numpy(y_train)
    job.member = Member(
        x=index_rows(x_all, fit_rows),
        y=y_all[fit_rows],
        seeds=seeds,
        x_val=index_rows(x_all, val_rows) if val_rows.size else None,
        y_val=y_all[val_rows] if val_rows.size else None,
    )
    return job


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


def model_factory(model_name: str, n_classes: int, shape: Any, settings: TrainSettings) -> Callable:
    """A no-argument builder of registry model ``model_name`` for inputs of ``shape``
    (an array shape (N, ...) or a dict of them) with the run's model keywords."""
    spec = model_spec(model_name)
    kwargs = {"n_classes": n_classes, **spec.shape_kwargs(shape), **settings.model_kw}
    return partial(build_model, model_name, **kwargs)


def product_kind(spec: ModelSpec, n_classes: int, shape: Any, settings: TrainSettings) -> str:
    """The model's kind, "torch", "sklearn" or "ensemble"; a registered factory of kind
    "auto" is built once to see what it returns."""
    if spec.kind != "auto":
        return spec.kind
    with seeded_torch(0):
        product = model_factory(spec.name, n_classes, shape, settings)()
    return "torch" if isinstance(product, torch.nn.Module) else "sklearn"


def train_jobs(
    model_name: str, jobs: Sequence[FoldJob], n_classes: int, settings: TrainSettings
) -> None:
    """Train the torch members of ``jobs`` together (`train_models`) and fill in their
    test probabilities and training facts, in place. ``info["seconds"]``: the job's
    `FoldJob.own_seconds` plus its share of its group's training time."""
    pending = [job for job in jobs if job.member is not None]
    if pending:
        device = resolve_device(settings.device)
        factory = model_factory(model_name, n_classes, pending[0].shape, settings)
        with torch_threads():
            trained = train_models(factory, [job.member for job in pending], settings, device)
            for job, result in zip(pending, trained, strict=True):
                started = time.perf_counter()
                x_test = to_device(job.x_test, device)
                job.proba[job.test_rows] = predict_proba(result.model, x_test)
                job.info |= result.info  # its "seconds": its share of the group's training
                job.member = None  # free the training data
                job.own_seconds += time.perf_counter() - started
    for job in jobs:
        job.info["seconds"] = job.info.get("seconds", 0.0) + job.own_seconds


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
    device: str | torch.device | None = "cpu",
    settings: TrainSettings | None = None,
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
    device : where a torch model trains: "auto" (CUDA when torch sees a GPU), "cpu",
        "cuda" or "cuda:N" (ignored when ``settings`` is given, which carries its own).
    Returns `FitResult` with ``proba`` (n_test, n_classes) and ``info`` (n_fit,
    n_validation, epochs_trained, ..., and "fits": every fitted piece with the rows of
    X_train it saw, for `mmhe.evaluation.audit.audit_fits`).
    """
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
    k = int(n_classes if n_classes is not None else y_train.max() + 1)
    job = prepare_fold(model_name, X_train, y_train, X_test, k, settings, fold_index, groups_train)
    train_jobs(model_name, [job], k, settings)
    return FitResult(np.asarray(job.proba, dtype=np.float64), job.info)


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
    present_tr = np.stack([~missing_rows(X_train[m]) for m in ensemble.modalities], 1)
    present_te = np.stack([~missing_rows(X_test[m]) for m in ensemble.modalities], 1)
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
    proba = ensemble.combine(test_proba, present_te, prior(y_train, n_classes))
    info["missing_input"] = ~present_te.any(axis=1)
    info["fits"] = fits
    return proba, info
