"""Samples, labels and inputs of a benchmark task, assembled from a store's features.

The sample set of a task depends only on the task (and ME/MaE choice), never on the
modalities: a sample missing one modality gets an all-NaN input row, which the training
engine treats as missing (unimodal models answer with the training class frequencies,
fusion models apply their missing-modality policy), so every model of a task is tested
on exactly the same samples.

Inputs by name: ``face`` (flow images), ``eeg`` (band-power window sequences),
``eeg_raw`` (raw EEG windows at 128 Hz, for EEGNet; `mmhe.features.eeg_raw`) and
``physio`` (feature vectors). `with_shuffled_labels` makes the shuffled-label control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError
from mmhe.features.batch import NON_FEATURE_COLUMNS, FeatureConfig, load_features
from mmhe.labels import EXPRESSION_TASKS, load_stimuli

Task = Literal["compound", "emotion7", "kind", "trial"]
TRIAL_CATEGORIES = tuple(c for c in dict.fromkeys(load_stimuli()["category"]) if c != "rest")
"""Stimulus categories of the trial task, in stimulus-table order (rest excluded)."""


INPUTS = ("face", "eeg", "eeg_raw", "physio")
"""Input names `load_task` knows (``eeg_raw`` is read from the same EEG as ``eeg``)."""


@dataclass
class TaskData:
    """Inputs of one task: X[input] (N, ...) float32, y (N,), groups (participants),
    trials ("sub/marker" or "sub/trial index"), stimuli (clip markers), sample ids."""

    task: str
    class_names: list[str]
    y: np.ndarray
    groups: np.ndarray
    trials: np.ndarray
    sample_ids: np.ndarray
    X: dict[str, np.ndarray] = field(default_factory=dict)
    stimuli: np.ndarray | None = None


def with_shuffled_labels(data: TaskData, seed: int) -> TaskData:
    """A copy of ``data`` whose labels are permuted within each participant (seeded).

    The shuffled-label control: each participant keeps their class counts, the link
    between input and label is gone, so every model should land at chance (as
    scikit-learn's ``permutation_test_score`` with groups does).
    """
    rng = np.random.default_rng([int(seed), 0xC0])
    y = data.y.copy()
    for person in np.unique(data.groups):
        rows = np.flatnonzero(data.groups == person)
        y[rows] = data.y[rng.permutation(rows)]
    return TaskData(
        data.task,
        data.class_names,
        y,
        data.groups,
        data.trials,
        data.sample_ids,
        dict(data.X),
        data.stimuli,
    )


def _label_column(task: str) -> tuple[str, tuple[str, ...]]:
    if task not in EXPRESSION_TASKS:
        raise ConfigError(f"unknown task {task!r}; use compound, emotion7, kind or trial")
    return EXPRESSION_TASKS[task]


def _align(ids: pd.Series, table: pd.DataFrame, key: str, array: np.ndarray) -> np.ndarray:
    """Rows of `array` in the order of `ids` (NaN rows where a sample has none)."""
    out = np.full((len(ids), *array.shape[1:]), np.nan, np.float32)
    position = pd.Series(np.arange(len(table)), index=table[key].to_numpy())
    found = ids.map(position)
    have = found.notna().to_numpy()
    rows = found[have].astype(int).to_numpy()
    ok = table["ok"].to_numpy()[rows] if "ok" in table else np.ones(len(rows), bool)
    out[np.flatnonzero(have)[ok]] = array[rows[ok]]
    return out


def _edge_pad(sequence: np.ndarray, n_windows: np.ndarray) -> np.ndarray:
    """Repeat each sequence's last valid window over its NaN padding: (N, T, F)."""
    out = sequence.copy()
    for i, n in enumerate(n_windows):
        if 0 < n < out.shape[1]:
            out[i, n:] = out[i, n - 1]
    return out


def _eeg_input(
    store: Path, ids: pd.Series, key: str, trial: bool, config: FeatureConfig
) -> np.ndarray:
    table, array = load_features(store, "eeg", trial=trial, config=config)
    if trial:
        table = table.assign(sample=table["subject_id"] + "/" + table["trial_index"].astype(str))
    sequence = array.reshape(*array.shape[:2], -1)  # (N, T, channels x bands)
    sequence = _edge_pad(sequence, table["n_windows"].to_numpy())
    table = table.assign(ok=table["n_windows"].to_numpy() > 0)
    return _align(ids, table, key, sequence)


def _eeg_raw_input(
    store: Path, ids: pd.Series, key: str, trial: bool, config: FeatureConfig
) -> np.ndarray:
    table, array = load_features(store, "eeg_raw", trial=trial, config=config)
    if trial:
        table = table.assign(sample=table["subject_id"] + "/" + table["trial_index"].astype(str))
    return _align(ids, table, key, array)


def _physio_input(
    store: Path, ids: pd.Series, key: str, trial: bool, config: FeatureConfig
) -> np.ndarray:
    table, _ = load_features(store, "physio", trial=trial, config=config)
    if trial:
        table = table.assign(sample=table["subject_id"] + "/" + table["trial_index"].astype(str))
    columns = [
        c
        for c in table.columns
        if c not in NON_FEATURE_COLUMNS
        and c != "sample"
        and pd.api.types.is_numeric_dtype(table[c])
    ]
    return _align(ids, table, key, table[columns].to_numpy(np.float32))


def load_task(
    store_path: str | Path,
    task: str,
    modalities: tuple[str, ...],
    *,
    samples: str = "ME",
    config: FeatureConfig | None = None,
) -> TaskData:
    """Assemble a task's samples and inputs from the store's cached features."""
    from mmhe.store import MMHEStore

    config = config or FeatureConfig()
    store = MMHEStore(store_path)
    if task == "trial":
        if "face" in modalities:
            raise ConfigError("the trial task has no face input (faces are per expression)")
        trials = store.trials()
        trials = trials[trials["category"].isin(TRIAL_CATEGORIES)].reset_index(drop=True)
        classes = [c for c in TRIAL_CATEGORIES if c in set(trials["category"])]
        ids = trials["subject_id"] + "/" + trials["trial_index"].astype(str)
        data = TaskData(
            task,
            classes,
            trials["category"].map(classes.index).to_numpy(),
            trials["subject_id"].to_numpy(dtype=str),
            ids.to_numpy(dtype=str),
            ids.to_numpy(dtype=str),
            stimuli=trials["code"].to_numpy(dtype=np.int64),
        )
        loaders = {"eeg": _eeg_input, "eeg_raw": _eeg_raw_input, "physio": _physio_input}
        for modality in modalities:
            if modality not in loaders:
                raise ConfigError(f"unknown input {modality!r}; use {', '.join(INPUTS)}")
            data.X[modality] = loaders[modality](store.path, ids, "sample", True, config)
        return data
    column, classes = _label_column(task)
    expressions = store.expressions(located=True)
    if samples != "both" and task != "kind":
        expressions = expressions[expressions["kind"] == samples]
    expressions = expressions[expressions[column].isin(classes)].reset_index(drop=True)
    present = [c for c in classes if c in set(expressions[column])]
    ids = expressions["expression_id"]
    data = TaskData(
        task,
        present,
        expressions[column].map(present.index).to_numpy(),
        expressions["subject_id"].to_numpy(dtype=str),
        (expressions["subject_id"] + "/" + expressions["marker"].astype(str)).to_numpy(dtype=str),
        ids.to_numpy(dtype=str),
        stimuli=pd.to_numeric(expressions["marker"], errors="coerce").fillna(-1).to_numpy(np.int64),
    )
    for modality in modalities:
        if modality == "face":
            table, array = load_features(store.path, "face", config=config)
            data.X["face"] = _align(ids, table, "expression_id", array)
        elif modality == "eeg":
            data.X["eeg"] = _eeg_input(store.path, ids, "expression_id", False, config)
        elif modality == "eeg_raw":
            data.X["eeg_raw"] = _eeg_raw_input(store.path, ids, "expression_id", False, config)
        elif modality == "physio":
            data.X["physio"] = _physio_input(store.path, ids, "expression_id", False, config)
        else:
            raise ConfigError(f"unknown input {modality!r}; use {', '.join(INPUTS)}")
    return data
