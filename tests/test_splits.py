"""Protocols: disjointness as required, determinism, the leakage audit."""

from __future__ import annotations

import numpy as np
import pytest

from mmhe.errors import ConfigError, MMHEError
from mmhe.evaluation.splits import (
    Fold,
    LeakageError,
    audit_split,
    group_kfold,
    inner_validation_split,
    leave_stimulus_out,
    loso,
    subject_stimulus_kfold,
    trial_kfold,
)


@pytest.fixture
def design():
    """12 participants with 2..7 trials each, 1..3 samples (windows/expressions) per trial."""
    rng = np.random.default_rng(3)
    groups, trials = [], []
    for p in range(12):
        for t in range(rng.integers(2, 8)):
            k = rng.integers(1, 4)
            groups += [f"P{p:02d}"] * k
            trials += [f"P{p:02d}/{101 + t}"] * k
    return np.array(groups), np.array(trials)


def _assert_partition(folds, n):
    tested = np.concatenate([f.test_idx for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(n))  # every sample tested exactly once
    for f in folds:
        assert np.intersect1d(f.train_idx, f.test_idx).size == 0
        assert f.train_idx.size + f.test_idx.size == n


def test_loso_one_fold_per_participant(design):
    groups, _ = design
    folds = list(loso(groups))
    assert [f.test_groups for f in folds] == [(p,) for p in np.unique(groups)]
    _assert_partition(folds, groups.size)
    for f in folds:
        assert set(groups[f.test_idx]) == set(f.test_groups)
        assert not set(groups[f.train_idx]) & set(f.test_groups)
        assert audit_split(f, groups)["passed"]


def test_group_kfold_disjoint_balanced_and_seeded(design):
    groups, _ = design
    folds = list(group_kfold(groups, k=4, seed=1))
    assert len(folds) == 4
    _assert_partition(folds, groups.size)
    for f in folds:
        assert not set(groups[f.train_idx]) & set(groups[f.test_idx])
        audit_split(f, groups)
    sizes = [f.test_idx.size for f in folds]
    assert max(sizes) - min(sizes) <= np.bincount(np.unique(groups, return_inverse=True)[1]).max()
    again = list(group_kfold(groups, k=4, seed=1))
    other = list(group_kfold(groups, k=4, seed=2))
    assert all(np.array_equal(a.test_idx, b.test_idx) for a, b in zip(folds, again, strict=True))
    assert any(
        not np.array_equal(a.test_idx, b.test_idx) for a, b in zip(folds, other, strict=True)
    )
    with pytest.raises(ConfigError):
        list(group_kfold(groups, k=13))


def test_trial_kfold_never_splits_a_trial(design):
    groups, trials = design
    folds = list(trial_kfold(trials, k=3, seed=0, groups=groups))
    _assert_partition(folds, groups.size)
    for f in folds:
        assert not set(trials[f.train_idx]) & set(trials[f.test_idx])
        record = audit_split(f, groups, trials=trials)
        assert record["unit"] == "trial" and record["passed"]
        # subject-dependent: participants appear on both sides
        assert set(groups[f.test_idx]) & set(groups[f.train_idx])
    # every participant with >= 3 trials is tested in every fold
    for person in np.unique(groups):
        if np.unique(trials[groups == person]).size >= 3:
            assert all(person in set(groups[f.test_idx]) for f in folds)
    # without participants: still grouped by trial
    for f in trial_kfold(trials, k=5, seed=4):
        assert not set(trials[f.train_idx]) & set(trials[f.test_idx])


def test_trial_owned_by_two_participants_is_rejected():
    with pytest.raises(ConfigError, match="two participants"):
        list(trial_kfold(["t1", "t1", "t2", "t3"], k=2, groups=["A", "B", "B", "B"]))


def test_inner_validation_uses_training_participants_only(design):
    groups, _ = design
    fold = next(loso(groups))
    fit, val = inner_validation_split(fold.train_idx, groups, fraction=0.25, seed=0)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), fold.train_idx)
    assert not set(groups[val]) & set(groups[fold.test_idx])
    assert not set(groups[val]) & set(groups[fit])  # whole participants
    assert len(set(groups[val])) == round(0.25 * 11)


def test_planted_leak_is_caught(design):
    groups, trials = design
    fold = next(loso(groups))
    leaked_sample = np.flatnonzero(groups == "P05")[0]
    leaky = Fold(
        fold.index, fold.train_idx, np.append(fold.test_idx, leaked_sample), fold.test_groups
    )
    with pytest.raises(LeakageError, match="P05") as info:
        audit_split(leaky, groups)
    assert isinstance(info.value, MMHEError)
    overlap = Fold(0, np.arange(10), np.arange(5, 15), ())
    with pytest.raises(LeakageError, match="indices_disjoint"):
        audit_split(overlap, groups)
    # a trial split in two is a leak for trial protocols
    values, counts = np.unique(trials, return_counts=True)
    rows = np.flatnonzero(trials == values[counts > 1][0])
    rest = np.setdiff1d(np.arange(groups.size), rows)
    torn = Fold(0, np.append(rest, rows[0]), rows[1:], ())
    with pytest.raises(LeakageError, match="trials_disjoint"):
        audit_split(torn, groups, trials=trials)


def _stimuli(trials):
    return np.array([int(t.split("/")[1]) for t in trials])


def test_leave_stimulus_out_holds_each_clip_out_for_everyone(design):
    groups, trials = design
    stimuli = _stimuli(trials)
    folds = list(leave_stimulus_out(stimuli))
    assert [f.test_groups for f in folds] == [(s,) for s in np.unique(stimuli)]
    _assert_partition(folds, groups.size)
    for f in folds:
        assert not set(stimuli[f.train_idx]) & set(stimuli[f.test_idx])
        record = audit_split(f, groups, trials, stimuli, participants_disjoint=False)
        assert record["passed"] and record["shared_stimuli"] == []
        assert set(groups[f.train_idx]) & set(groups[f.test_idx])  # people on both sides


def test_subject_stimulus_grid_holds_out_people_and_clips_together(design):
    groups, trials = design
    stimuli = _stimuli(trials)
    folds = list(subject_stimulus_kfold(groups, stimuli, k=3, seed=2))
    assert len(folds) == 9
    tested = np.concatenate([f.test_idx for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(groups.size))  # each sample once
    for f in folds:
        assert not set(groups[f.train_idx]) & set(groups[f.test_idx])
        assert not set(stimuli[f.train_idx]) & set(stimuli[f.test_idx])
        assert audit_split(f, groups, None, stimuli, participants_disjoint=True)["passed"]
    same = [f.test_idx for f in subject_stimulus_kfold(groups, stimuli, k=3, seed=2)]
    assert all(np.array_equal(a, f.test_idx) for a, f in zip(same, folds, strict=True))


def test_a_clip_on_both_sides_is_caught(design):
    groups, trials = design
    stimuli = _stimuli(trials)
    fold = next(iter(leave_stimulus_out(stimuli)))
    clip = stimuli[fold.test_idx[0]]
    other = np.flatnonzero(stimuli != clip)
    leaky = Fold(0, other[1:], np.concatenate([fold.test_idx, other[:1]]), fold.test_groups)
    with pytest.raises(LeakageError, match="stimulus clips on both sides"):
        audit_split(leaky, groups, trials, stimuli, participants_disjoint=False)
