"""Benchmark metrics (MEGC convention) and their uncertainty.

Pooled scores (`pooled_scores`): predictions of all folds are pooled, then per class c
F1_c = 2TP / (2TP + FP + FN) and recall_c = TP / N_c; UF1 = mean F1_c, UAR = mean
recall_c (= balanced accuracy), accuracy = correct / all. Classes are those in
``labels`` (default: every class seen in y_true or y_pred); a class with neither true
nor predicted samples has no F1 and is left out of UF1, and a class without true
samples is left out of UAR (scikit-learn's conventions). Per-participant scores
(`per_subject_scores`, mean +- SD) are what many EEG papers print: they differ from
pooled scores, so always say which one a number is.

Uncertainty: `bootstrap_ci` resamples PARTICIPANTS with replacement (samples of one
participant are not independent); `paired_permutation_test` swaps two models'
predictions participant by participant. Both work on per-participant confusion
matrices, so resampling is a matrix product, not a Python loop over samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError

METRICS: tuple[str, ...] = ("accuracy", "uf1", "uar")
Metric = str | Callable[[np.ndarray, np.ndarray], float]


def _check(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ConfigError(
            f"y_true and y_pred must be 1-D of equal length, got {t.shape}, {p.shape}"
        )
    if t.size == 0:
        raise ConfigError("no predictions to score")
    return t, p


def _labels(t: np.ndarray, p: np.ndarray, labels: Sequence[Any] | None) -> np.ndarray:
    return np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)


def _encode(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    order = np.argsort(labels, kind="stable")
    position = np.searchsorted(labels[order], values)
    position = np.clip(position, 0, labels.size - 1)
    codes = order[position]
    unknown = labels[codes] != values
    if unknown.any():
        raise ConfigError(f"value {values[unknown][0]!r} is not among labels {labels.tolist()}")
    return codes


def _confusion_counts(t: np.ndarray, p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = labels.size
    codes = _encode(t, labels) * k + _encode(p, labels)
    return np.bincount(codes, minlength=k * k).reshape(k, k).astype(np.float64)


def scores_from_confusion(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, UF1, UAR of confusion matrices (..., K, K), rows true, columns predicted.

    Vectorised over leading axes (used by the bootstrap and permutation test).
    """
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    n_true = m.sum(axis=-1)
    n_pred = m.sum(axis=-2)
    total = m.sum(axis=(-2, -1))
    f1_den = n_true + n_pred  # = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(f1_den > 0, 2 * tp / f1_den, np.nan)
        recall = np.where(n_true > 0, tp / n_true, np.nan)
        accuracy = np.where(total > 0, tp.sum(axis=-1) / total, np.nan)
    return {
        "accuracy": accuracy,
        "uf1": _nanmean(f1),
        "uar": _nanmean(recall),
    }


def _nanmean(values: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pooled_scores(
    y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None
) -> dict[str, float]:
    """Accuracy, UF1 and UAR of pooled predictions (MEGC convention), plus ``n``."""
    t, p = _check(y_true, y_pred)
    scores = scores_from_confusion(_confusion_counts(t, p, _labels(t, p, labels)))
    return {name: float(scores[name]) for name in METRICS} | {"n": int(t.size)}


def confusion(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> pd.DataFrame:
    """Confusion matrix as a DataFrame: rows true class, columns predicted class (counts)."""
    t, p = _check(y_true, y_pred)
    labels_ = _labels(t, p, labels)
    counts = _confusion_counts(t, p, labels_).astype(np.int64)
    return pd.DataFrame(
        counts,
        index=pd.Index(labels_, name="true"),
        columns=pd.Index(labels_, name="predicted"),
    )


@dataclass(frozen=True)
class SubjectScores:
    """Per-participant scores: ``table`` (one row per participant: n, accuracy, uf1,
    uar), their ``mean`` and sample standard deviation ``sd`` (ddof 1) over participants."""

    table: pd.DataFrame
    mean: dict[str, float]
    sd: dict[str, float]

    def summary(self) -> str:
        """e.g. 'accuracy 0.612 +- 0.210, uf1 ..., uar ... (per participant, n=275)'."""
        parts = [f"{m} {self.mean[m]:.3f} +- {self.sd[m]:.3f}" for m in METRICS]
        return ", ".join(parts) + f" (mean +- SD over participants, n={len(self.table)})"


def per_subject_scores(
    y_true: Any, y_pred: Any, groups: Any, labels: Sequence[Any] | None = None
) -> SubjectScores:
    """Scores computed within each participant, then averaged (mean +- SD).

    Within a participant, UF1/UAR use the classes present in that participant's true or
    predicted labels (restricted to ``labels`` if given).
    """
    t, p = _check(y_true, y_pred)
    g = np.asarray(groups)
    if g.shape != t.shape:
        raise ConfigError("groups must have one entry per prediction")
    rows = []
    for person in np.unique(g):
        own = g == person
        tt, pp = t[own], p[own]
        present = np.unique(np.concatenate([tt, pp]))
        if labels is not None:
            present = np.intersect1d(present, np.asarray(labels))
        s = scores_from_confusion(_confusion_counts(tt, pp, present))
        rows.append(
            {"participant": person, "n": int(own.sum())} | {m: float(s[m]) for m in METRICS}
        )
    table = pd.DataFrame(rows).set_index("participant")
    sd = table[list(METRICS)].std(ddof=1) if len(table) > 1 else table[list(METRICS)].std(ddof=0)
    return SubjectScores(
        table,
        {m: float(table[m].mean()) for m in METRICS},
        {m: float(sd[m]) for m in METRICS},
    )


def _per_group_confusions(
    t: np.ndarray, p: np.ndarray, g: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(G, K, K) confusion matrix of every participant, and the participants."""
    people, person_code = np.unique(g, return_inverse=True)
    k = labels.size
    cell = _encode(t, labels) * k + _encode(p, labels)
    flat = np.bincount(person_code * k * k + cell, minlength=people.size * k * k)
    return flat.reshape(people.size, k, k).astype(np.float64), people


def _metric_of(
    metric: Metric,
) -> tuple[str | None, Callable[[np.ndarray, np.ndarray], float] | None]:
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric, None
    return None, metric


def bootstrap_ci(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    metric: Metric = "uf1",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    labels: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Percentile bootstrap confidence interval over PARTICIPANTS.

    Each replicate draws as many participants as there are, with replacement, pools
    their predictions and scores them. ``metric``: "accuracy", "uf1", "uar" or a
    callable (y_true, y_pred) -> float. Returns estimate (on all data), low, high,
    level, n_boot.
    """
    t, p = _check(y_true, y_pred)
    g = np.asarray(groups)
    if g.shape != t.shape:
        raise ConfigError("groups must have one entry per prediction")
    if not 0 < level < 1 or n_boot < 1:
        raise ConfigError("need 0 < level < 1 and n_boot >= 1")
    name, func = _metric_of(metric)
    labels_ = _labels(t, p, labels)
    rng = np.random.default_rng(seed)
    people = np.unique(g)
    draws = rng.integers(0, people.size, size=(n_boot, people.size))
    if name is not None:
        conf, _ = _per_group_confusions(t, p, g, labels_)
        weights = np.stack([np.bincount(d, minlength=people.size) for d in draws])
        pooled = np.einsum("bg,gij->bij", weights.astype(np.float64), conf)
        values = scores_from_confusion(pooled)[name]
        estimate = float(scores_from_confusion(conf.sum(axis=0))[name])
    else:
        members = [np.flatnonzero(g == person) for person in people]
        values = np.array(
            [
                func(t[idx], p[idx])
                for idx in (np.concatenate([members[i] for i in d]) for d in draws)
            ]
        )
        estimate = float(func(t, p))
    alpha = (1 - level) / 2
    low, high = np.nanquantile(values, [alpha, 1 - alpha])
    return {
        "estimate": estimate,
        "low": float(low),
        "high": float(high),
        "level": level,
        "n_boot": int(n_boot),
    }


def paired_permutation_test(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    groups: Any,
    metric: Metric = "uf1",
    n_perm: int = 10000,
    seed: int = 0,
    labels: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Two-sided paired permutation test of metric(A) - metric(B) on the same samples.

    Under the null hypothesis the two models are exchangeable within a participant, so
    each replicate swaps the two models' predictions for a random half of the
    participants. p = (1 + #{|null| >= |observed|}) / (1 + n_perm). Returns the
    observed difference, both scores, p_value and n_perm.
    """
    t, a = _check(y_true, pred_a)
    _, b = _check(y_true, pred_b)
    g = np.asarray(groups)
    if g.shape != t.shape:
        raise ConfigError("groups must have one entry per prediction")
    name, func = _metric_of(metric)
    labels_ = _labels(t, np.concatenate([a, b]), labels)
    rng = np.random.default_rng(seed)
    people = np.unique(g)
    swaps = rng.integers(0, 2, size=(n_perm, people.size)).astype(np.float64)
    if name is not None:
        conf_a, _ = _per_group_confusions(t, a, g, labels_)
        conf_b, _ = _per_group_confusions(t, b, g, labels_)
        diff = conf_b - conf_a
        base_a, base_b = conf_a.sum(axis=0), conf_b.sum(axis=0)
        moved = np.einsum("pg,gij->pij", swaps, diff)
        null = (
            scores_from_confusion(base_a + moved)[name]
            - scores_from_confusion(base_b - moved)[name]
        )
        score_a = float(scores_from_confusion(base_a)[name])
        score_b = float(scores_from_confusion(base_b)[name])
    else:
        person_index = np.searchsorted(people, g)
        null = np.empty(n_perm)
        for i, s in enumerate(swaps):
            swap = s[person_index].astype(bool)
            null[i] = func(t, np.where(swap, b, a)) - func(t, np.where(swap, a, b))
        score_a, score_b = float(func(t, a)), float(func(t, b))
    observed = score_a - score_b
    exceed = np.sum(np.abs(null) >= abs(observed) - 1e-12)
    return {
        "difference": observed,
        "score_a": score_a,
        "score_b": score_b,
        "p_value": float((1 + exceed) / (1 + n_perm)),
        "n_perm": int(n_perm),
    }
