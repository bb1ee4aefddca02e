"""Participant (and seed) confidence intervals: closed forms and simulated coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mmhe.evaluation.intervals import (
    jackknife_interval,
    population_truth,
    simulate_coverage,
    simulate_participants,
)
from mmhe.evaluation.metrics import scores_from_confusion


def test_one_seed_equals_the_textbook_jackknife_t_interval():
    conf = simulate_participants(np.random.default_rng(3), 12)
    ci = jackknife_interval(conf, "uf1")
    total = conf.sum(axis=0)
    loo = np.array([scores_from_confusion(total - c)["uf1"] for c in conf])
    se = np.sqrt(11 / 12 * np.sum((loo - loo.mean()) ** 2))
    estimate = scores_from_confusion(total)["uf1"]
    t = stats.t.ppf(0.975, 11)
    assert ci["estimate"] == pytest.approx(estimate)
    assert ci["low"] == pytest.approx(estimate - t * se)
    assert ci["high"] == pytest.approx(estimate + t * se)
    assert ci["seed_sd"] == 0 and ci["se_seeds"] == 0


def test_seed_spread_widens_the_interval_by_its_variance_of_the_mean():
    rng = np.random.default_rng(4)
    base = simulate_participants(rng, 15)
    # three "seeds": the same people, the predictions of some samples moved between classes
    seeds = np.stack([base, base.copy(), base.copy()])
    seeds[1, :, 0, 0] -= np.minimum(seeds[1, :, 0, 0], 2)
    seeds[1, :, 0, 1] += base[:, 0, 0] - seeds[1, :, 0, 0]
    seeds[2, :, 1, 1] -= np.minimum(seeds[2, :, 1, 1], 1)
    seeds[2, :, 1, 0] += base[:, 1, 1] - seeds[2, :, 1, 1]
    ci = jackknife_interval(seeds, "uf1")
    per_seed = scores_from_confusion(seeds.sum(axis=1))["uf1"]
    assert ci["estimate"] == pytest.approx(per_seed.mean())
    assert ci["seed_sd"] == pytest.approx(per_seed.std(ddof=1))
    assert ci["seed_min"] == pytest.approx(per_seed.min())
    assert ci["se"] ** 2 == pytest.approx(ci["se_participants"] ** 2 + per_seed.var(ddof=1) / 3)
    assert ci["low"] < per_seed.min() and ci["high"] > per_seed.max()


def test_jackknife_covers_95_percent_at_30_participants_and_beats_the_bootstrap_at_10():
    truth = population_truth("uf1", n_participants=200_000)
    at_30 = simulate_coverage(30, n_studies=3000, truth=truth, seed=11)
    assert abs(at_30 - 0.95) <= 0.02, at_30
    jack_10 = simulate_coverage(10, n_studies=600, truth=truth, seed=12)
    boot_10 = simulate_coverage(
        10, method="percentile", n_studies=600, n_boot=400, truth=truth, seed=12
    )
    assert boot_10 < 0.92 and jack_10 > boot_10 + 0.03, (jack_10, boot_10)
