"""Leakage-free, deterministic training of the registry models on in-memory arrays.

`fit_predict` trains one model on one training set and returns class probabilities for
a test set; `run_folds` runs a whole protocol (a list of `Fold` from
`mmhe.evaluation.splits`) and returns one prediction row per test sample. The
store-driven runner (`mmhe benchmark`) calls `run_folds`. Torch models train through
`mmhe.evaluation.engine` (many folds as one stacked model, any device); scikit-learn
models fit their own pipeline; late fusion and stacking train their members here.

Leakage rules enforced here
    - every fold is checked by `audit_split` before training (the audit is returned in
      ``predictions.attrs["audit"]``);
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

Parallelism and threads
    Groups of folds are tasks: in this process, or with a ``distributed.Client`` on its
    workers. One torch thread per worker process (the default of `mmhe.parallel`):
    these networks are small, and intra-op threads mostly wait at barriers (with two
    threads the plain STSTNet loop ran at 0.36x to 0.85x the wall-clock rate of one
    thread, at 1.6x to 3.3x its CPU time, on a shared 2-core machine:
    ``benchmarks/bench_training.py`` row D); the cores are used by running folds side
    by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmhe.errors import ConfigError
from mmhe.evaluation.engine import Member, predict_proba, train_models
from mmhe.evaluation.fused_ststnet import train_fused_ststnet
from mmhe.evaluation.planning import group_limit, profile_step
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
    resolve_device,
    resolve_settings,
    seeded_torch,
    torch_threads,
)
from mmhe.evaluation.splits import Fold, audit_split, group_kfold, inner_validation_split
from mmhe.models import LateFusion, StackingFusion, build_model, model_spec


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
class _FoldJob:
    """One fold ready to train: its engine member (None when nothing is left to train),
    its predictable test inputs, the prior-filled probabilities and its facts."""

    proba: np.ndarray
    info: dict[str, Any]
    member: Member | None = None
    x_test: Any = None
    test_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    shape: Any = None
    started: float = field(default_factory=time.perf_counter)


def _prepare_fold(
    model_name: str,
    X_train: ArrayInput,
    y_train: np.ndarray,
    X_test: ArrayInput,
    n_classes: int,
    settings: TrainSettings,
    fold_index: int,
    groups_train: np.ndarray | None,
) -> _FoldJob:
    """Scale a fold's inputs on its training rows; scikit-learn models and ensembles are
    fit right here, torch models come back as an engine `Member` for `_train_jobs`."""
    started = time.perf_counter()
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
        return _FoldJob(proba, info, started=started)
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
    job = _FoldJob(
        np.tile(prior(y_train, n_classes), (n_test, 1)),
        {
            "n_fit": int(fit_rows.size),
            "n_validation": int(val_rows.size),
            "n_train_without_input": int((~usable).sum()),
            "n_test_without_input": int((~predictable).sum()),
            "missing_input": ~predictable,
        },
        started=started,
    )
    if not (fit_rows.size and predictable.any()):
        return job
    job.test_rows = np.flatnonzero(predictable)
    if spec.kind == "sklearn":
        model = build_model(model_name, n_classes=n_classes, seed=seeds[0], **settings.model_kw)
        model.fit(prepared.train[fit_rows], y_train[fit_rows])
        job.proba[job.test_rows] = model.predict_proba(prepared.test[job.test_rows])
        return job
    if multimodal:
        x_all = to_torch(prepared.train, prepared.present_train)
        job.x_test = to_torch(
            take(prepared.test, job.test_rows), prepared.present_test[job.test_rows]
        )
        job.shape = {m: np.shape(v) for m, v in prepared.train.items()}
    else:
        x_all = to_torch(prepared.train)
        job.x_test = to_torch(prepared.test[job.test_rows])
        job.shape = np.shape(prepared.train)
    y_all = torch.from_numpy(y_train)
    job.member = Member(
        x=index_rows(x_all, fit_rows),
        y=y_all[fit_rows],
        seeds=seeds,
        x_val=index_rows(x_all, val_rows) if val_rows.size else None,
        y_val=y_all[val_rows] if val_rows.size else None,
    )
    return job


def _factory(model_name: str, n_classes: int, shape: Any, settings: TrainSettings) -> Callable:
    spec = model_spec(model_name)
    kwargs = {"n_classes": n_classes, **spec.shape_kwargs(shape), **settings.model_kw}
    return partial(build_model, model_name, **kwargs)


def _train_jobs(
    model_name: str, jobs: Sequence[_FoldJob], n_classes: int, settings: TrainSettings
) -> None:
    """Train the torch members of ``jobs`` together (`train_models`) and predict."""
    pending = [job for job in jobs if job.member is not None]
    if pending:
        device = resolve_device(settings.device)
        factory = _factory(model_name, n_classes, pending[0].shape, settings)
        with torch_threads():
            trained = train_models(factory, [job.member for job in pending], settings, device)
            for job, result in zip(pending, trained, strict=True):
                job.proba[job.test_rows] = predict_proba(result.model, _on(job.x_test, device))
                job.info |= result.info
                job.member = None  # free the training data
    for job in jobs:
        job.info["seconds"] = job.info.get("seconds", 0.0) + time.perf_counter() - job.started


def _on(x: Any, device: torch.device) -> Any:
    if isinstance(x, Mapping):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


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
    device: str = "auto",
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
    device : "auto" (CUDA when available), "cpu" or "cuda".
    Returns `FitResult` with ``proba`` (n_test, n_classes).
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
    job = _prepare_fold(model_name, X_train, y_train, X_test, k, settings, fold_index, groups_train)
    _train_jobs(model_name, [job], k, settings)
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
    proba = ensemble.combine(test_proba, present_te, prior(y_train, n_classes))
    info["missing_input"] = ~present_te.any(axis=1)
    return proba, info


# -------------------------------------------------------------------- run_folds


def _run_fold_group(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Sequence[Fold],
    n_classes: int,
    settings: TrainSettings,
) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
    """Train and predict a group of folds (runs in-process or as one Dask task)."""
    if settings.engine == "fused":
        if isinstance(X, Mapping):
            raise ConfigError("engine='fused' takes one array of flow images, not a dict")
        with torch_threads():
            results = train_fused_ststnet(
                np.asarray(X, dtype=np.float32), y, groups, folds, n_classes, settings
            )
        return [(f.index, proba, info) for f, (proba, info) in zip(folds, results, strict=True)]
    jobs = [
        _prepare_fold(
            model_name,
            take(X, fold.train_idx),
            y[fold.train_idx],
            take(X, fold.test_idx),
            n_classes,
            settings,
            fold.index,
            groups[fold.train_idx],
        )
        for fold in folds
    ]
    _train_jobs(model_name, jobs, n_classes, settings)
    return [(fold.index, job.proba, job.info) for fold, job in zip(folds, jobs, strict=True)]


def _folds_per_task(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    fold: Fold,
    n_classes: int,
    settings: TrainSettings,
) -> int:
    """How many folds one task trains: the engine's group size for this model (measured
    on one batch of ``fold``), one for scikit-learn models and ensembles."""
    if settings.folds_per_group is not None:
        return settings.folds_per_group
    if settings.engine == "fused":
        return 4
    if model_spec(model_name).kind != "torch":
        return 1
    job = _prepare_fold(
        model_name,
        take(X, fold.train_idx),
        y[fold.train_idx],
        take(X, fold.test_idx),
        n_classes,
        settings,
        fold.index,
        groups[fold.train_idx],
    )
    if job.member is None:
        return 1
    member = job.member
    rows = np.arange(min(member.n, settings.batch_size))
    with seeded_torch(member.seeds[0]), torch_threads():
        model = _factory(model_name, n_classes, job.shape, settings)()
        profile = profile_step(model, index_rows(member.x, rows), member.y[rows], member.n)
    return group_limit(profile, settings, resolve_device(settings.device))


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
    for c, name in enumerate(class_names):
        table[f"prob_{name}"] = proba[:, c]
    table["missing_input"] = np.asarray(info.get("missing_input", np.zeros(len(table), bool)))
    table["fold"] = fold.index
    table["model"] = model_name
    return table


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
    device: str = "auto",
    folds_per_group: int | None = None,
    engine: str = "stacked",
    client: Any = None,
    on_fold_done: Callable[[int, pd.DataFrame, dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Train and test ``model_name`` on every fold; one prediction row per test sample.

    X : (N, ...) array or {modality: (N, ...)} dict; y : (N,) int labels; groups : (N,)
        participants. folds : `Fold` list from `mmhe.evaluation.splits` (audited first;
        pass ``trials`` for trial-grouped protocols, where participants may be shared).
    device : "auto" (CUDA when available), "cpu" or "cuda"; every worker uses it.
    folds_per_group : folds trained together as one stacked model and run as one task
        (default: the engine's rule, `mmhe.evaluation.planning.plan_groups`; predictions
        are the same for any grouping, to float rounding).
    engine : "stacked" (`mmhe.evaluation.engine`: the registry module itself, any
        model, any device) or "fused" (STSTNet on the CPU only: the hand-written
        trainer of `mmhe.evaluation.fused_ststnet`, 1.2x to 1.6x less CPU time,
        results equal in distribution but not in value to the stacked engine's).
    client : None runs every group in this process; a ``distributed.Client`` runs the
        groups as tasks on its workers (inputs are scattered once). Use
        `mmhe.parallel.dask_client` or its worker environment: Dask's default memory
        trimming makes training 2-2.7x slower (see `mmhe.parallel.WORKER_ENVIRON`).
    on_fold_done : called with (fold index, its prediction rows, its info) as soon as
        the fold's group finishes (for incremental saving and resuming).

    Returns a DataFrame with columns participant, sample, y_true, y_pred, prob_<class>
    ..., missing_input, fold, model, sorted by fold then sample; ``attrs`` holds
    "audit" (one `audit_split` record per fold), "folds" (per-fold info: n_train,
    n_test, n_fit, n_validation, epochs_trained, folds_in_group, seconds, ...),
    "settings" and "class_names".
    """
    folds = list(folds)
    if not folds:
        raise ConfigError("no folds to run")
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    n = n_samples(X)
    if y.shape != (n,) or groups.shape != (n,):
        raise ConfigError(f"X has {n} samples but y has {y.shape} and groups {groups.shape}")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names for {k} classes")
    audit = [audit_split(f, groups, trials) for f in folds]
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
        folds_per_group=folds_per_group,
        engine=engine,
    )
    size = _folds_per_task(model_name, X, y, groups, folds[0], k, settings)
    settings = replace(settings, folds_per_group=size)  # the tasks need not measure again
    chunks = [folds[i : i + size] for i in range(0, len(folds), size)]
    by_index = {f.index: f for f in folds}
    tables: dict[int, pd.DataFrame] = {}
    infos: dict[int, dict[str, Any]] = {}

    def collect(results: list[tuple[int, np.ndarray, dict[str, Any]]]) -> None:
        for index, proba, info in results:
            fold = by_index[index]
            table = _fold_table(fold, proba, info, y, groups, names, model_name)
            info = {key: v for key, v in info.items() if key != "missing_input"}
            info |= {
                "fold": index,
                "test_groups": list(fold.test_groups),
                "n_train": int(fold.train_idx.size),
                "n_test": int(fold.test_idx.size),
            }
            tables[index], infos[index] = table, info
            if on_fold_done is not None:
                on_fold_done(index, table, info)

    if client is None:
        for chunk in chunks:
            collect(_run_fold_group(model_name, X, y, groups, chunk, k, settings))
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
                pure=False,
            )
            for chunk in chunks
        ]
        for future in as_completed(futures):
            collect(future.result())
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
            "device": str(resolve_device(settings.device)),
            "engine": settings.engine,
            "folds_per_group": size,
        },
        "class_names": names,
    }
    return predictions
