"""Raw EEG windows for end-to-end EEG models (EEGNet and the like).

Each stored trial's EEG is band-passed, notch-filtered and re-referenced to the common
average (`mmhe.features.eeg.preprocess`, as for band power), resampled to
``config.sfreq`` (128 Hz: EEGNet's rate, Lawhern et al. 2018) with MNE's FFT resampler
(`mne.filter.resample`, which low-passes at the new Nyquist), and cut into fixed-length
windows, so every sample has the same shape (1, channels, samples):

- per expression: ``length_s`` seconds from ``start`` = (anchor, offset s), anchors
  ``onset``, ``apex`` or ``offset`` (default onset - 0.5 s, 2 s long: 256 samples);
- per trial: ``trial_length_s`` seconds from ``trial_start_s`` after the trial's start.

A window reaching outside its trial keeps its length: the missing samples are NaN (the
training engine fills them with the training mean after its z-score) and the expression
gets an ``eeg_raw_window_clipped`` issue; a window with no sample inside is all NaN (no
input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class RawWindows:
    """Windows of one participant.

    expressions : (n_expressions, 1, channels, samples) float32 volts, NaN outside trials
    expression_ok : (n_expressions,) bool, at least one sample inside the trial
    trials : (n_trials, 1, channels, trial samples) float32 volts
    trial_table : subject_id, trial_index, code, category, ok
    """

    expressions: np.ndarray
    expression_ok: np.ndarray
    trials: np.ndarray
    trial_table: pd.DataFrame
    channels: list[str]
    issues: list[dict[str, Any]] = field(default_factory=list)


def fixed_window(data: np.ndarray, start: int, length: int) -> tuple[np.ndarray, bool]:
    """``data[:, start:start + length]`` with NaN where it leaves ``data``; (window, clipped).

    >>> fixed_window(np.arange(4.0)[None], -1, 3)[0]
    array([[nan,  0.,  1.]])
    """
    out = np.full((data.shape[0], length), np.nan, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, data.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = data[:, lo:hi]
    return out, bool(lo != start or hi != start + length)


def _anchor_s(row: pd.Series, anchor: str, start_s: float) -> float:
    if anchor == "onset":
        return start_s
    if anchor == "apex":
        return start_s + float(row["onset_apex_s"])
    return start_s + float(row["duration_s"])


def eeg_raw_windows(store, sid: str, expressions: pd.DataFrame, config) -> RawWindows:
    """Raw EEG windows of one participant's expressions and trials (see module doc).

    config : `mmhe.features.batch.EEGRawFeatureConfig`.
    """
    import mne

    from mmhe.features.batch import _filtered_trials, _issue

    sfreq = float(store.eeg(sid).attrs["sfreq"])
    ratio = config.sfreq / sfreq
    length = round(config.length_s * config.sfreq)
    trial_length = round(config.trial_length_s * config.sfreq)
    trial_start = round(config.trial_start_s * config.sfreq)
    by_trial = {k: g for k, g in expressions.groupby("trial_index")} if len(expressions) else {}
    trials_iter = _filtered_trials(store, sid, config)
    _, channels = next(trials_iter)
    windows = np.full((len(expressions), 1, len(channels), length), np.nan, np.float32)
    trial_windows, trial_rows, issues = [], [], []
    for trial, data in trials_iter:
        resampled = mne.filter.resample(data, up=ratio, down=1.0, npad="auto", verbose="error")
        window, _ = fixed_window(resampled, trial_start, trial_length)
        trial_windows.append(window[None])
        trial_rows.append(
            {
                "subject_id": sid,
                "trial_index": int(trial.trial_index),
                "code": int(trial.code),
                "category": trial.category,
                "ok": bool(np.isfinite(window).any()),
            }
        )
        for index, row in by_trial.get(trial.trial_index, pd.DataFrame()).iterrows():
            if pd.isna(row["eeg_onset"]):
                continue
            onset_s = (int(row["eeg_onset"]) - int(trial.eeg_start)) / sfreq
            anchor, offset = config.start
            begin = round((_anchor_s(row, anchor, onset_s) + offset) * config.sfreq)
            position = expressions.index.get_loc(index)
            windows[position, 0], clipped = fixed_window(resampled, begin, length)
            if clipped:
                issues.append(
                    _issue(
                        sid,
                        row["expression_id"],
                        "eeg_raw_window_clipped",
                        "the raw EEG window leaves the trial; NaN outside",
                    )
                )
    trials_array = (
        np.stack(trial_windows)
        if trial_windows
        else np.zeros((0, 1, len(channels), trial_length), np.float32)
    )
    ok = np.isfinite(windows.reshape(len(windows), -1)).any(axis=1)
    table = pd.DataFrame(
        trial_rows, columns=["subject_id", "trial_index", "code", "category", "ok"]
    )
    return RawWindows(windows, ok, trials_array, table, list(channels), issues)
