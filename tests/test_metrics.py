"""Metrics: agreement with scikit-learn, pooled vs per-subject, bootstrap and permutation test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
)

from mmhe.errors import ConfigError
from mmhe.evaluation.metrics import (
    bootstrap_ci,
    confusion,
    paired_permutation_test,
    per_subject_scores,
    pooled_scores,
    scores_from_confusion,
)


def _noisy_predictions(rng, n_subjects, per_subject, accuracy):
    groups = np.repeat(np.arange(n_subjects), per_subject)
    y = rng.choice(3, size=groups.size, p=[0.5, 0.3, 0.2])
    wrong = rng.random(groups.size) > accuracy
    pred = np.where(wrong, (y + rng.integers(1, 3, groups.size)) % 3, y)
    return y, pred, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pooled_scores_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    # predictions of 20 LOSO folds, pooled; some folds lack a class
    y, pred, _ = _noisy_predictions(rng, 20, 7, 0.6)
    scores = pooled_scores(y, pred)
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert scores["uf1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert scores["uar"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert scores["n"] == y.size


def test_closed_form_uf1_and_string_labels():
    y = np.array(["neg", "neg", "neg", "pos", "pos", "sur"])
    p = np.array(["neg", "neg", "pos", "pos", "sur", "sur"])
    # F1: neg 2*2/(4+0+1)=0.8, pos 2*1/(2+1+1)=0.5, sur 2*1/(2+1+0)=2/3
    scores = pooled_scores(y, p)
    assert scores["uf1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert scores["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    table = confusion(y, p, labels=["neg", "pos", "sur"])
    np.testing.assert_array_equal(
        table.to_numpy(), confusion_matrix(y, p, labels=["neg", "pos", "sur"])
    )
    assert list(table.index) == ["neg", "pos", "sur"]
    with pytest.raises(ConfigError, match="not among labels"):
        pooled_scores(y, p, labels=["neg", "pos"])


def test_per_subject_mean_differs_from_pooled():
    # subject A: 10 samples, all correct; subject B: 2 samples, both wrong.
    y = np.array([0] * 5 + [1] * 5 + [0, 1])
    p = np.array([0] * 5 + [1] * 5 + [1, 0])
    g = np.array(["A"] * 10 + ["B"] * 2)
    pooled = pooled_scores(y, p)
    subjects = per_subject_scores(y, p, g)
    assert pooled["accuracy"] == pytest.approx(10 / 12)
    assert subjects.mean["accuracy"] == pytest.approx(0.5)
    assert subjects.sd["accuracy"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    assert subjects.table.loc["A", "n"] == 10
    assert "n=2" in subjects.summary()


def test_vectorised_confusion_scores_match_per_matrix():
    rng = np.random.default_rng(5)
    mats = rng.integers(0, 9, size=(6, 3, 3))
    batch = scores_from_confusion(mats)
    for m, acc, uf1 in zip(mats, batch["accuracy"], batch["uf1"], strict=True):
        y = np.repeat(np.arange(3), m.sum(1))
        p = np.concatenate([np.repeat(np.arange(3), row) for row in m])
        assert acc == pytest.approx(accuracy_score(y, p))
        assert uf1 == pytest.approx(f1_score(y, p, average="macro"))


def test_bootstrap_ci_contains_estimate_and_narrows():
    rng = np.random.default_rng(0)
    widths = []
    for n_subjects in (10, 80):
        y, p, g = _noisy_predictions(rng, n_subjects, 6, 0.7)
        ci = bootstrap_ci(y, p, g, "uf1", n_boot=400, seed=1)
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        assert ci["estimate"] == pytest.approx(pooled_scores(y, p)["uf1"])
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < 0.6 * widths[0]
    # a callable metric takes the slow path and agrees with the vectorised one
    y, p, g = _noisy_predictions(rng, 8, 5, 0.7)
    fast = bootstrap_ci(y, p, g, "accuracy", n_boot=200, seed=3)
    slow = bootstrap_ci(y, p, g, lambda t, q: float(np.mean(t == q)), n_boot=200, seed=3)
    assert fast == pytest.approx(slow)


def test_permutation_test_separates_better_model_from_identical():
    rng = np.random.default_rng(1)
    y, good, g = _noisy_predictions(rng, 30, 6, 0.9)
    bad = np.where(rng.random(y.size) < 0.5, rng.integers(0, 3, y.size), good)
    better = paired_permutation_test(y, good, bad, g, "uf1", n_perm=999, seed=0)
    assert better["difference"] > 0.1
    assert better["p_value"] < 0.01
    same = paired_permutation_test(y, good, good.copy(), g, "uar", n_perm=199, seed=0)
    assert same["difference"] == 0
    assert same["p_value"] == 1.0
    slightly = np.where(rng.random(y.size) < 0.03, (good + 1) % 3, good)
    assert (
        paired_permutation_test(y, good, slightly, g, "accuracy", n_perm=999, seed=0)["p_value"]
        > 0.01
    )
