"""Evaluation protocols and their leakage audit.

- `loso`: leave-one-subject-out (the MEGC and MMHE default);
- `group_kfold`: k folds of whole participants;
- `trial_kfold`: subject-dependent k-fold grouped by trial, so that no window or
  expression of one stimulus clip lands on both sides (pitfall 3 of
  ``references.md``); pass the stimulus marker as the trial id to keep each clip on one
  side for every participant (pitfall 4);
- `leave_stimulus_out`: one fold per stimulus clip, for every participant at once: the
  held-out clip was never seen in training, by anyone;
- `subject_stimulus_kfold`: a k x k grid of (participant fold, stimulus fold): test
  samples come from held-out participants watching held-out clips, training samples
  from the other participants watching the other clips (samples mixing the two are in
  neither side of that fold), so neither the person nor the clip is known;
- `inner_validation_split`: a validation set of TRAINING participants for early
  stopping (pitfall 1: never the test fold);
- `audit_split`: checks one fold and raises `LeakageError` on a leak.

All protocols yield `Fold` objects with sorted integer index arrays into the sample
table. Seeds are explicit (numpy Generator); no global random state is touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmhe.errors import ConfigError, MMHEError


class LeakageError(MMHEError):
    """A split puts the same participant (or trial) on both sides, or is malformed."""


@dataclass(frozen=True)
class Fold:
    """One train/test split.

    index : fold number (0-based, stable for a given input and seed).
    train_idx, test_idx : sorted int64 sample indices.
    test_groups : the held-out units (participants, or trials for `trial_kfold`).
    """

    index: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_groups: tuple[Any, ...]


def _as_labels(values: Sequence[Any] | np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.ndim != 1 or labels.size == 0:
        raise ConfigError(f"{what} must be a non-empty 1-D sequence, got shape {labels.shape}")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ConfigError(
            f"{what} contains NaN at sample {int(np.flatnonzero(np.isnan(labels))[0])}"
        )
    return labels


def _folds_from_assignment(labels: np.ndarray, unit_fold: dict[Any, int], k: int) -> Iterator[Fold]:
    fold_of_sample = np.array([unit_fold[v] for v in labels.tolist()])
    for f in range(k):
        test = np.flatnonzero(fold_of_sample == f)
        train = np.flatnonzero(fold_of_sample != f)
        yield Fold(f, train, test, tuple(u.item() for u in np.unique(labels[test])))


def loso(groups: Sequence[Any] | np.ndarray) -> Iterator[Fold]:
    """Leave-one-subject-out: one fold per participant, in sorted participant order.

    groups : (N,) participant of every sample.
    """
    yield from _leave_one_out(_as_labels(groups, "groups"), "LOSO needs at least two participants")


def group_kfold(groups: Sequence[Any] | np.ndarray, k: int = 5, seed: int = 0) -> Iterator[Fold]:
    """k folds of whole participants, balanced in number of samples.

    Participants are shuffled with ``seed``, then each goes (largest first) to the fold
    with the fewest samples so far; ties go to the lower fold number.
    """
    labels = _as_labels(groups, "groups")
    units, counts = np.unique(labels, return_counts=True)
    if not 2 <= k <= units.size:
        raise ConfigError(f"group_kfold needs 2 <= k <= {units.size} participants, got k={k}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(units.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    assignment: dict[Any, int] = {}
    for u in order:
        f = int(np.argmin(load))
        assignment[units[u].item()] = f
        load[f] += counts[u]
    yield from _folds_from_assignment(labels, assignment, k)


def trial_kfold(
    trial_ids: Sequence[Any] | np.ndarray,
    k: int = 5,
    seed: int = 0,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> Iterator[Fold]:
    """Subject-dependent k-fold grouped by trial: all samples of a trial share a side.

    trial_ids : (N,) trial of every sample (e.g. "P01/105"; or the stimulus marker, to
        keep each clip on one side for everyone).
    groups : optional (N,) participants; then each participant's trials are shuffled
        and dealt round-robin over the k folds, so every fold tests every participant
        who has at least k trials (the subject-dependent design).
    """
    trials = _as_labels(trial_ids, "trial_ids")
    rng = np.random.default_rng(seed)
    assignment: dict[Any, int] = {}
    if groups is None:
        units = np.unique(trials)
        if not 2 <= k <= units.size:
            raise ConfigError(f"trial_kfold needs 2 <= k <= {units.size} trials, got k={k}")
        for position, u in enumerate(rng.permutation(units)):
            assignment[u.item()] = position % k
    else:
        people = _as_labels(groups, "groups")
        if people.shape != trials.shape:
            raise ConfigError("trial_ids and groups must have the same length")
        owner: dict[Any, Any] = {}
        for t, p in zip(trials.tolist(), people.tolist(), strict=True):
            if owner.setdefault(t, p) != p:
                raise ConfigError(f"trial {t!r} belongs to two participants ({owner[t]!r}, {p!r})")
        if not 2 <= k <= np.unique(trials).size:
            raise ConfigError(f"trial_kfold needs 2 <= k <= number of trials, got k={k}")
        offset = 0
        for person in np.unique(people):
            own = np.unique(trials[people == person])
            for position, u in enumerate(rng.permutation(own)):
                assignment[u.item()] = (position + offset) % k
            offset += own.size  # rotate so participants with few trials fill all folds
    yield from _folds_from_assignment(trials, assignment, k)


def leave_stimulus_out(stimuli: Sequence[Any] | np.ndarray) -> Iterator[Fold]:
    """One fold per stimulus clip (sorted), the clip held out for every participant.

    stimuli : (N,) stimulus marker of every sample (the clip an expression or trial
        belongs to). Participants appear on both sides by design (a subject-dependent,
        stimulus-independent protocol); combine with `subject_stimulus_kfold` to hold
        out both. For the trial task the class is the clip's category, so a category
        with one clip in the data cannot be learned when that clip is held out.
    """
    yield from _leave_one_out(
        _as_labels(stimuli, "stimuli"), "leave-stimulus-out needs at least two stimulus clips"
    )


def _leave_one_out(labels: np.ndarray, too_few: str) -> Iterator[Fold]:
    """One fold per distinct label (sorted), that label's samples held out; `too_few`
    is the ConfigError message when there are fewer than two labels."""
    units = np.unique(labels)
    if units.size < 2:
        raise ConfigError(too_few)
    for f, unit in enumerate(units):
        test = np.flatnonzero(labels == unit)
        train = np.flatnonzero(labels != unit)
        yield Fold(f, train, test, (unit.item(),))


def subject_stimulus_kfold(
    groups: Sequence[Any] | np.ndarray,
    stimuli: Sequence[Any] | np.ndarray,
    k: int = 3,
    seed: int = 0,
) -> Iterator[Fold]:
    """k x k folds holding out participants AND stimulus clips at once.

    Participants are dealt into k folds (`group_kfold`, balanced, seeded) and clips into
    k folds (shuffled with ``seed``, round-robin). Fold (a, b), index a * k + b, tests
    the samples of participant fold a watching clip fold b and trains on the samples of
    the other participants watching the other clips; every sample is tested exactly
    once over the k^2 folds (a cell without samples yields no fold, so indices may skip).
    ``test_groups`` holds the test participants.
    """
    people = _as_labels(groups, "groups")
    clips = _as_labels(stimuli, "stimuli")
    if people.shape != clips.shape:
        raise ConfigError("groups and stimuli must have the same length")
    units = np.unique(clips)
    if not 2 <= k <= min(units.size, np.unique(people).size):
        raise ConfigError(
            f"subject_stimulus_kfold needs 2 <= k <= {min(units.size, np.unique(people).size)}"
            f" (participants and clips), got k={k}"
        )
    person_fold = np.empty(people.size, dtype=np.int64)
    for fold in group_kfold(people, k, seed):
        person_fold[fold.test_idx] = fold.index
    order = np.random.default_rng([int(seed), 1]).permutation(units.size)
    clip_of = {units[u].item(): position % k for position, u in enumerate(order)}
    clip_fold = np.array([clip_of[c] for c in clips.tolist()])
    for a in range(k):
        for b in range(k):
            test = np.flatnonzero((person_fold == a) & (clip_fold == b))
            train = np.flatnonzero((person_fold != a) & (clip_fold != b))
            if test.size == 0:
                continue
            yield Fold(a * k + b, train, test, tuple(u.item() for u in np.unique(people[test])))


def inner_validation_split(
    train_idx: np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split training samples into (fit_idx, val_idx) by whole TRAINING participants.

    The validation participants (about ``fraction`` of the training participants, at
    least one) are drawn with ``seed`` among the participants of ``train_idx`` only, so
    early stopping never sees the test fold.
    """
    labels = _as_labels(groups, "groups")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    units = np.unique(labels[train_idx])
    if units.size < 2:
        raise ConfigError("an inner validation split needs at least two training participants")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    n_val = min(units.size - 1, max(1, round(fraction * units.size)))
    chosen = np.random.default_rng(seed).choice(units, size=n_val, replace=False)
    is_val = np.isin(labels[train_idx], chosen)
    return np.sort(train_idx[~is_val]), np.sort(train_idx[is_val])


def audit_split(
    fold: Fold,
    groups: Sequence[Any] | np.ndarray,
    trials: Sequence[Any] | np.ndarray | None = None,
    stimuli: Sequence[Any] | np.ndarray | None = None,
    participants_disjoint: bool | None = None,
) -> dict[str, Any]:
    """Check one fold; return the audit record, raise `LeakageError` on any failure.

    Participant protocols (``trials`` None): train and test participants must be
    disjoint. Trial protocols (``trials`` given): train and test trials must be
    disjoint (participants may appear on both sides, by design). ``stimuli`` given:
    train and test stimulus clips must be disjoint too (leave-stimulus-out and the
    subject-and-stimulus grid); ``participants_disjoint`` forces the participant check
    on or off (default: on unless ``trials`` or ``stimuli`` is given). Always: both
    sides non-empty, indices in range, no index twice, no index on both sides.
    """
    labels = _as_labels(groups, "groups")
    n = labels.size
    train = np.asarray(fold.train_idx, dtype=np.int64)
    test = np.asarray(fold.test_idx, dtype=np.int64)
    if participants_disjoint is None:
        participants_disjoint = trials is None and stimuli is None
    if participants_disjoint or (trials is None and stimuli is None):
        unit_labels, unit = labels, "participant"
    elif trials is not None:
        unit_labels, unit = _as_labels(trials, "trials"), "trial"
    else:
        unit_labels, unit = _as_labels(stimuli, "stimuli"), "stimulus"
    if unit_labels.size != n:
        raise ConfigError(f"groups and {unit} labels must have the same length")
    units_name = {"participant": "participants", "trial": "trials", "stimulus": "stimuli"}[unit]
    checks = {
        "train_nonempty": train.size > 0,
        "test_nonempty": test.size > 0,
        "indices_in_range": bool(
            train.size + test.size == 0
            or (
                min(train.min(initial=0), test.min(initial=0)) >= 0
                and max(train.max(initial=-1), test.max(initial=-1)) < n
            )
        ),
        "no_duplicate_indices": np.unique(train).size == train.size
        and np.unique(test).size == test.size,
        "indices_disjoint": np.intersect1d(train, test).size == 0,
    }
    if not checks["indices_in_range"]:
        raise LeakageError(f"fold {fold.index}: sample indices outside 0..{n - 1}")
    train_units = np.unique(unit_labels[train])
    test_units = np.unique(unit_labels[test])
    shared = np.intersect1d(train_units, test_units)
    checks[f"{units_name}_disjoint"] = shared.size == 0
    shared_clips = np.zeros(0)
    if stimuli is not None:
        clips = _as_labels(stimuli, "stimuli")
        if clips.size != n:
            raise ConfigError("groups and stimuli must have the same length")
        shared_clips = np.intersect1d(np.unique(clips[train]), np.unique(clips[test]))
        checks["stimuli_disjoint"] = shared_clips.size == 0
    record: dict[str, Any] = {
        "fold": int(fold.index),
        "unit": unit,
        "n_train": int(train.size),
        "n_test": int(test.size),
        f"n_train_{units_name}": int(train_units.size),
        f"n_test_{units_name}": int(test_units.size),
        f"test_{units_name}": [u.item() for u in test_units],
        f"shared_{units_name}": [u.item() for u in shared],
        "n_train_participants": int(np.unique(labels[train]).size),
        "n_test_participants": int(np.unique(labels[test]).size),
        "checks": {name: bool(ok) for name, ok in checks.items()},
    }
    if stimuli is not None:
        record["shared_stimuli"] = [u.item() for u in shared_clips]
    record["passed"] = all(record["checks"].values())
    if not record["passed"]:
        failed = [name for name, ok in record["checks"].items() if not ok]
        detail = ""
        if shared.size:
            in_test = int(np.isin(unit_labels[test], shared).sum())
            detail = (
                f"; {units_name} on both sides: {[u.item() for u in shared][:10]}"
                f" ({in_test} test samples)"
            )
        if shared_clips.size:
            detail += f"; stimulus clips on both sides: {[u.item() for u in shared_clips][:10]}"
        raise LeakageError(
            f"fold {fold.index} fails {', '.join(failed)}{detail}; rebuild the split with "
            f"mmhe.evaluation.splits instead of editing index arrays by hand"
        )
    return record
