"""Run a whole protocol: every fold of a `Fold` list trained, tested and audited.

>>> predictions = run_folds("ststnet", X, y, groups, list(loso(groups)))  # doctest: +SKIP
>>> predictions.attrs["audit"][0]["fits"]["passed"]                       # doctest: +SKIP
True

`run_folds` checks every fold with `audit_split`, trains the folds in groups (the
pieces of `mmhe.evaluation.training`: one stacked model per group, or the fused STSTNet
trainer), audits every fold's fit records (`mmhe.evaluation.audit.audit_fits`) and
returns one prediction row per test sample. The store-driven runner (`mmhe benchmark`)
calls it.

Parallelism and threads
    Groups of folds are tasks: in this process, or with a ``distributed.Client`` on its
    workers (a registered model's spec travels with the task). One torch thread per
    worker process (the default of `mmhe.parallel`): these networks are small, and
    intra-op threads mostly wait at barriers (with two threads the plain STSTNet loop
    ran at 0.36x to 0.85x the wall-clock rate of one thread, at 1.6x to 3.3x its CPU
    time, on a shared 2-core machine: ``benchmarks/bench_training.py`` row D); the cores
    are used by running folds side by side.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmhe.errors import ConfigError
from mmhe.evaluation.audit import audit_fits
from mmhe.evaluation.device import resolve_device
from mmhe.evaluation.engine import build_member_model
from mmhe.evaluation.fused_ststnet import train_fused_ststnet
from mmhe.evaluation.planning import group_limit, profile_step
from mmhe.evaluation.scaling import ArrayInput, index_rows, n_samples, take
from mmhe.evaluation.settings import TrainSettings, resolve_settings, seeded_torch, torch_threads
from mmhe.evaluation.splits import Fold, audit_split
from mmhe.evaluation.training import FoldJob, model_factory, prepare_fold, product_kind, train_jobs
from mmhe.models import ModelSpec, ensure_registered, model_spec


def _run_fold_group(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Sequence[Fold],
    n_classes: int,
    settings: TrainSettings,
    registered: ModelSpec | None = None,
) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
    """Train and predict a group of folds (runs in-process or as one Dask task).

    registered : the spec of a user-registered model, registered here first when this
        runs in a Dask worker that has never seen it.
    Each fold's info carries "fits" with rows that index X (`_to_global`).
    """
    if registered is not None:
        ensure_registered(registered)
    if settings.engine == "fused":
        if isinstance(X, Mapping):
            raise ConfigError("engine='fused' takes one array of flow images, not a dict")
        with torch_threads():
            results = train_fused_ststnet(
                np.asarray(X, dtype=np.float32), y, groups, folds, n_classes, settings
            )
        return [(f.index, proba, info) for f, (proba, info) in zip(folds, results, strict=True)]
    jobs = [_fold_job(model_name, X, y, groups, fold, n_classes, settings) for fold in folds]
    train_jobs(model_name, jobs, n_classes, settings)
    for fold, job in zip(folds, jobs, strict=True):
        job.info["fits"] = [_to_global(r, fold.train_idx) for r in job.info.get("fits", [])]
    return [(fold.index, job.proba, job.info) for fold, job in zip(folds, jobs, strict=True)]


def _fold_job(
    model_name: str,
    X: ArrayInput,
    y: np.ndarray,
    groups: np.ndarray,
    fold: Fold,
    n_classes: int,
    settings: TrainSettings,
) -> FoldJob:
    """`prepare_fold` on one fold's training and test rows of X."""
    return prepare_fold(
        model_name,
        take(X, fold.train_idx),
        y[fold.train_idx],
        take(X, fold.test_idx),
        n_classes,
        settings,
        fold.index,
        groups[fold.train_idx],
    )


def _to_global(record: dict[str, Any], train_idx: np.ndarray) -> dict[str, Any]:
    """A fit record with rows of the fold's training arrays -> sample indices into X
    (-1 for a row that is not one of the fold's training samples)."""
    rows = np.asarray(record["rows"], dtype=np.int64)
    inside = (rows >= 0) & (rows < train_idx.size)
    mapped = np.where(inside, train_idx[np.clip(rows, 0, max(train_idx.size - 1, 0))], -1)
    return {**record, "rows": mapped, "global": True}


_MEASURING = threading.Lock()
"""Held while this process sizes the tasks (`_folds_per_task` builds and measures a model
under a torch seed; `mmhe.evaluation.runner` runs combinations from two threads)."""


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
    on one batch of ``fold``), one for scikit-learn models, ensembles and the
    sequential engine."""
    if settings.folds_per_group is not None:
        return settings.folds_per_group
    if settings.engine == "fused":
        return 4
    spec = model_spec(model_name)
    if settings.engine == "sequential" or spec.kind in ("sklearn", "ensemble"):
        return 1
    shape = {m: np.shape(v) for m, v in X.items()} if isinstance(X, Mapping) else np.shape(X)
    if product_kind(spec, n_classes, shape, settings) != "torch":
        return 1
    job = _fold_job(model_name, X, y, groups, fold, n_classes, settings)
    if job.member is None:
        return 1
    member = job.member
    rows = np.arange(min(member.n, settings.batch_size))
    with torch_threads():
        model = build_member_model(
            model_factory(model_name, n_classes, job.shape, settings), member
        )
        with seeded_torch(member.seeds[0]):
            profile = profile_step(model, index_rows(member.x, rows), member.y[rows], member.n)
    return group_limit(profile, settings, resolve_device(settings.device))


def even_chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in order, cut into the fewest chunks of at most ``size`` whose lengths
    differ by at most one: 10 folds with ``size`` 8 become two tasks of 5, not 8 and 2
    (the second worker would idle while the first trains its 8)."""
    n_chunks = -(-len(items) // max(size, 1))
    bounds = [len(items) * i // n_chunks for i in range(n_chunks + 1)]
    return [list(items[a:b]) for a, b in itertools.pairwise(bounds)]


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
    device: str | torch.device | None = "cpu",
    folds_per_group: int | None = None,
    engine: str = "auto",
    client: Any = None,
    on_fold_done: Callable[[int, pd.DataFrame, dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Train and test ``model_name`` on every fold; one prediction row per test sample.

    X : (N, ...) array or {modality: (N, ...)} dict; y : (N,) int labels; groups : (N,)
        participants. folds : `Fold` list from `mmhe.evaluation.splits` (audited first;
        pass ``trials`` for trial-grouped protocols, where participants may be shared,
        and ``stimuli`` for stimulus-grouped ones; see `audit_split`).
    device : where torch models train: "auto" (CUDA when torch sees a GPU), "cpu",
        "cuda" or "cuda:N"; resolved here, every worker uses it.
    folds_per_group : most folds trained together as one stacked model and run as one
        task (default: the engine's rule, `mmhe.evaluation.planning.plan_groups`); the
        folds are cut into tasks of equal size (`even_chunks`). Predictions are the
        same for any grouping, to float rounding.
    engine : "auto" ("stacked" on the CPU, "sequential" on a GPU), "stacked"
        (`mmhe.evaluation.engine`: the registry module itself, any model, any device),
        "sequential" (the same engine, one fold per group and task) or "fused"
        (STSTNet on the CPU only: the hand-written trainer of
        `mmhe.evaluation.fused_ststnet`, 1.2x to 1.6x less CPU time, results equal in
        distribution but not in value to the stacked engine's).
    client : None runs every group in this process; a ``distributed.Client`` runs the
        groups as tasks on its workers (inputs are scattered once). Use
        `mmhe.parallel.dask_client` or its worker environment: Dask's default memory
        trimming makes training 2-2.7x slower (see `mmhe.parallel.WORKER_ENVIRON`).
    on_fold_done : called with (fold index, its prediction rows, its info) as soon as
        the fold's group finishes (for incremental saving and resuming). The info holds
        ``fit_audit``: `mmhe.evaluation.audit.audit_fits` of every fitted piece.

    Returns a DataFrame with columns participant, sample, y_true, y_pred, true_class,
    pred_class (class names), prob_<class> ..., missing_input, fold, model, sorted by
    fold then sample; ``attrs`` holds "audit" (per fold: the `audit_split` record with
    the fit audit under "fits"), "folds" (per-fold info: n_train, n_test, n_fit,
    n_validation, epochs_trained, folds_in_group, seconds, engine, device, ...),
    "settings", "engine" and "class_names".
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
        folds_per_group=folds_per_group,
        engine=engine,
    )
    with _MEASURING:  # it seeds torch, whose RNG and thread count are process-wide
        size = _folds_per_task(model_name, X, y, groups, folds[0], k, settings)
    settings = replace(settings, folds_per_group=size)  # the tasks need not measure again
    chunks = even_chunks(folds, size)
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
                "engine": settings.engine,
                "device": settings.device,
            }
            tables[index], infos[index] = table, info
            if on_fold_done is not None:
                on_fold_done(index, table, info)

    if client is None:
        for chunk in chunks:
            collect(
                _run_fold_group(model_name, X, y, groups, chunk, k, settings, registered=registered)
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
            "device": settings.device,
            "engine": settings.engine,
            "folds_per_group": size,
        },
        "engine": settings.engine,
        "class_names": names,
    }
    return predictions
