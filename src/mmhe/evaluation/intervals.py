"""Confidence intervals over participants (and seeds) for pooled benchmark metrics.

Method: a delete-one-participant jackknife with a Student t quantile (Quenouille-Tukey;
Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 11). With G
participants and S training seeds, ``confusions`` holds one confusion matrix per seed
and participant (S, G, K, K). The estimate is the mean over seeds of the pooled metric;

    theta_(g) = mean over seeds of the metric pooled without participant g,
    var_participants = (G - 1) / G * sum_g (theta_(g) - mean theta_(.))^2,
    var_seeds = (SD over seeds of the pooled metric)^2 / S   (0 with one seed),
    interval = estimate +- t(G - 1, 0.975) * sqrt(var_participants + var_seeds).

Participants are the sampling unit (their samples are not independent); the seed term
adds the training randomness of the mean of S runs, so a CI drawn from several seeds is
wider than one drawn from one seed by exactly the seed spread it saw.

Why not the percentile bootstrap over participants (`metrics.bootstrap_ci`)? It covers
too little with few participants. `simulate_coverage` measures both on a simulated
population (3 classes, 70 / 15 / 15 %, like the compound MEs; 1 + Poisson(14) samples
per participant; class mix Dirichlet(4 p); per-participant accuracy Beta(7, 3); errors
go to the majority class 60 % of the time); the truth is the metric of the population's
expected confusion matrix. 95 % nominal; 10,000 simulated studies for the jackknife,
2,000 for the bootstrap (Monte Carlo SE 0.2 and 0.5 points):

    metric     participants   jackknife-t   percentile bootstrap
    UF1        10             0.939         0.880
    UF1        30             0.946         0.927
    UAR        10             0.929         0.892
    UAR        30             0.946         0.929
    accuracy   10             0.942         0.891
    accuracy   30             0.945         0.932

(``python benchmarks/ci_coverage.py`` prints the table; `tests/test_intervals.py`
checks the jackknife at 30 participants within 2 points of 95 %.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from mmhe.errors import ConfigError
from mmhe.evaluation.metrics import METRICS, scores_from_confusion

METHOD = "participant jackknife t-interval (+ seed variance of the mean)"


def jackknife_interval(
    confusions: np.ndarray, metric: str = "uf1", level: float = 0.95
) -> dict[str, Any]:
    """Estimate and CI of a pooled metric from per-seed, per-participant confusions.

    confusions : (S, G, K, K) counts (rows true, columns predicted) of S seeds and G
        participants (the same participants in every seed), or (G, K, K) for one seed.
    Returns estimate (mean over seeds of the pooled metric), low, high, se,
    se_participants, se_seeds, seed_sd, seed_min, seed_max, n_seeds, n_participants.
    With fewer than two participants the interval is NaN.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    conf = np.asarray(confusions, dtype=np.float64)
    if conf.ndim == 3:
        conf = conf[None]
    if conf.ndim != 4 or conf.shape[-1] != conf.shape[-2]:
        raise ConfigError(f"confusions must be (S, G, K, K), got {conf.shape}")
    n_seeds, n_groups = conf.shape[:2]
    total = conf.sum(axis=1)  # (S, K, K)
    per_seed = scores_from_confusion(total)[metric]  # (S,)
    estimate = float(np.nanmean(per_seed))
    seed_sd = float(np.nanstd(per_seed, ddof=1)) if n_seeds > 1 else 0.0
    var_seeds = seed_sd**2 / n_seeds
    if n_groups >= 2:
        loo = scores_from_confusion(total[:, None] - conf)[metric]  # (S, G)
        theta = np.nanmean(loo, axis=0)  # (G,)
        var_participants = (n_groups - 1) / n_groups * np.nansum((theta - np.nanmean(theta)) ** 2)
        se = float(np.sqrt(var_participants + var_seeds))
        half = float(stats.t.ppf(0.5 + level / 2, n_groups - 1)) * se
        low, high = max(0.0, estimate - half), min(1.0, estimate + half)
    else:
        var_participants, se, low, high = np.nan, np.nan, np.nan, np.nan
    return {
        "estimate": estimate,
        "low": float(low),
        "high": float(high),
        "se": se,
        "se_participants": float(np.sqrt(var_participants)),
        "se_seeds": float(np.sqrt(var_seeds)),
        "seed_sd": seed_sd,
        "seed_min": float(np.nanmin(per_seed)),
        "seed_max": float(np.nanmax(per_seed)),
        "n_seeds": int(n_seeds),
        "n_participants": int(n_groups),
        "level": level,
    }


# ----------------------------------------------------------------- coverage


SIM_CLASS_SHARES = (0.7, 0.15, 0.15)


def simulate_participants(
    rng: np.random.Generator, n_participants: int, shape: tuple[int, ...] = ()
) -> np.ndarray:
    """Confusion matrices (*shape, n_participants, 3, 3) of simulated participants.

    Each has 1 + Poisson(14) samples, a class mix ~ Dirichlet(4 * (0.7, 0.15, 0.15)), an
    accuracy ~ Beta(7, 3); a wrong answer goes to the majority class 60 % of the time
    (to the other wrong class otherwise, or split 50/50 for majority-class samples).
    """
    shares = np.asarray(SIM_CLASS_SHARES)
    k = shares.size
    size = (*shape, n_participants)
    n = 1 + rng.poisson(14, size=size)
    mix = rng.dirichlet(4 * shares, size=size)
    counts = rng.multinomial(n, mix)  # (*size, K)
    accuracy = rng.beta(7, 3, size=size)
    conf = np.zeros((*size, k, k))
    for true in range(k):
        correct = rng.binomial(counts[..., true], accuracy)
        wrong = counts[..., true] - correct
        others = [c for c in range(k) if c != true]
        to_first = 0.6 if others[0] == 0 else 0.5
        first = rng.binomial(wrong, to_first)
        conf[..., true, true] = correct
        conf[..., true, others[0]] = first
        conf[..., true, others[1]] = wrong - first
    return conf


def population_truth(metric: str = "uf1", n_participants: int = 400_000, seed: int = 1) -> float:
    """The metric of the simulated population's expected pooled confusion matrix."""
    conf = simulate_participants(np.random.default_rng(seed), n_participants)
    return float(scores_from_confusion(conf.sum(axis=0))[metric])


def simulate_coverage(
    n_participants: int,
    *,
    metric: str = "uf1",
    method: str = "jackknife",
    n_studies: int = 2000,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    truth: float | None = None,
) -> float:
    """Share of simulated studies whose interval holds the population value.

    method : "jackknife" (`jackknife_interval`, one seed) or "percentile" (the
        participant percentile bootstrap of `metrics.bootstrap_ci`).
    """
    truth = population_truth(metric) if truth is None else truth
    rng = np.random.default_rng(seed)
    conf = simulate_participants(rng, n_participants, (n_studies,))  # (R, G, K, K)
    total = conf.sum(axis=1)
    if method == "jackknife":
        estimate = scores_from_confusion(total)[metric]
        loo = scores_from_confusion(total[:, None] - conf)[metric]
        g = n_participants
        se = np.sqrt((g - 1) / g * ((loo - loo.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
        half = stats.t.ppf(0.5 + level / 2, g - 1) * se
        low, high = estimate - half, estimate + half
    elif method == "percentile":
        draws = rng.integers(0, n_participants, size=(n_boot, n_participants))
        weights = np.stack([np.bincount(d, minlength=n_participants) for d in draws]).astype(float)
        values = scores_from_confusion(np.einsum("bg,rgij->rbij", weights, conf))[metric]
        alpha = (1 - level) / 2
        low, high = np.nanquantile(values, [alpha, 1 - alpha], axis=1)
    else:
        raise ConfigError(f"unknown interval method {method!r}; use jackknife or percentile")
    return float(np.mean((low <= truth) & (truth <= high)))
