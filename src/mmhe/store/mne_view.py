"""A store's EEG as MNE objects: the continuous session, expression-locked and trial epochs.

Everything here reads the store only; `MMHEStore.raw`, `.expression_epochs` and
`.trial_epochs` call these functions. Channel positions: the Neuroscan Quik-Cap
(`mmhe.io.eeg.quikcap_montage`). Times are seconds on the EEG clock, sample 0 being the
recording's first sample, as in the store's ``eeg_*`` sample columns.

Event names use MNE's "/" tags, so ``epochs["ME"]``, ``epochs["anger"]`` or
``epochs["ME/anger"]`` select as expected; event values are
``10 * kind + emotion`` (kind 1 = ME, 2 = MaE, 3 = unknown; emotion 0..8 in
`mmhe.labels.EMOTIONS` order, 9 = unknown) for expressions and the stimulus marker for
trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError, InputFileError
from mmhe.labels import EMOTIONS

if TYPE_CHECKING:
    import mne

    from mmhe.store.reader import MMHEStore

LINE_FREQ_HZ = 50.0
"""Mains frequency where MMHE was recorded (China)."""

KINDS: tuple[str, ...] = ("ME", "MaE")


def _info(array) -> mne.Info:
    import mne

    from mmhe.io.eeg import quikcap_montage

    info = mne.create_info(
        list(array.attrs["channels"]),
        float(array.attrs["sfreq"]),
        list(array.attrs["channel_types"]),
    )
    info.set_montage(quikcap_montage(), match_case=False, on_missing="ignore")
    with info._unlock():
        info["line_freq"] = LINE_FREQ_HZ
    return info


def _continuous(store: MMHEStore, subject_id: str):
    group = store._group(subject_id)
    if "eeg_continuous" not in group:
        raise InputFileError(
            store.arrays_path(subject_id),
            "this store keeps no continuous EEG",
            "ingest again with IngestConfig(keep_continuous_eeg=True), the default",
        )
    return group["eeg_continuous"]


def _session_window(store: MMHEStore, subject_id: str, start: int, stop: int) -> np.ndarray:
    """EEG samples [start, stop) of the session (channels x samples, volts, float64);
    zeros where the window leaves the recording. Reads the continuous EEG when the store
    keeps it, else the trial that holds the whole window."""
    group = store._group(subject_id)
    n_channels = store.eeg(subject_id).shape[1]
    out = np.zeros((n_channels, stop - start))
    if "eeg_continuous" in group:
        array = group["eeg_continuous"]
        lo, hi = max(0, start), min(array.shape[1], stop)
        if hi > lo:
            out[:, lo - start : hi - start] = array[:, lo:hi]
        return out
    trials = store.trials(participant=subject_id)
    inside = trials[
        (trials["eeg_start"] <= start) & (trials["eeg_start"] + trials["n_eeg_samples"] >= stop)
    ]
    if not len(inside):
        raise InputFileError(
            store.arrays_path(subject_id),
            f"EEG samples {start}..{stop} lie outside every stored trial and the store keeps "
            "no continuous EEG",
            "use a window inside the trials, or ingest with keep_continuous_eeg=True",
        )
    trial = inside.iloc[0]
    offset = int(trial["eeg_start"])
    out[:] = store.eeg(subject_id)[int(trial["trial_index"]), :, start - offset : stop - offset]
    return out


def continuous_raw(store: MMHEStore, subject_id: str) -> mne.io.RawArray:
    """The whole EEG session of one participant as an MNE `RawArray` (volts, preloaded).

    Channels: every recorded channel but the trigger (64 EEG with Quik-Cap positions,
    HEO/VEO as eog, EKG as ecg, EMG as emg). Annotations: one per stimulus trial
    (``trial/<category>/<marker>``, from its marker to the next) and one per located
    expression (``<kind>/<emotion>``, from onset to offset); expressions that could not be
    located have no EEG time and are listed in `MMHEStore.issues`.
    """
    import mne

    array = _continuous(store, subject_id)
    raw = mne.io.RawArray(np.asarray(array[...], dtype=np.float64), _info(array), verbose="error")
    raw.set_annotations(session_annotations(store, subject_id, float(array.attrs["sfreq"])))
    return raw


def session_annotations(store: MMHEStore, subject_id: str, sfreq: float) -> mne.Annotations:
    """Trials and located expressions as MNE annotations (seconds from the first sample)."""
    import mne

    trials = store.trials(participant=subject_id)
    onsets, durations, names = [], [], []
    for trial in trials.itertuples(index=False):
        onsets.append(float(trial.onset_s))
        durations.append(float(trial.end_s) - float(trial.onset_s))
        names.append(f"trial/{trial.category}/{int(trial.code)}")
    table = store.expressions(participant=subject_id, located=True)
    for row in table.itertuples(index=False):
        if pd.isna(row.eeg_onset):
            continue
        onsets.append(int(row.eeg_onset) / sfreq)
        durations.append((int(row.eeg_offset) - int(row.eeg_onset)) / sfreq)
        names.append(expression_event_name(row.kind, row.emotion))
    order = np.argsort(onsets, kind="stable")
    return mne.Annotations(
        np.asarray(onsets)[order], np.asarray(durations)[order], np.asarray(names)[order]
    )


def _text(value: object, unknown: str = "unknown") -> str:
    return unknown if value is None or pd.isna(value) else str(value)


def expression_event_name(kind: object, emotion: object) -> str:
    """``"ME/anger"``: the MNE event name of an expression."""
    return f"{_text(kind)}/{_text(emotion)}"


def expression_event_value(kind: object, emotion: object) -> int:
    """``10 * kind + emotion`` (see the module docstring)."""
    k = KINDS.index(kind) + 1 if kind in KINDS else 3
    e = EMOTIONS.index(emotion) if emotion in EMOTIONS else 9
    return 10 * k + e


def aus_text(aus: Sequence[int]) -> str:
    """Action units in the CASME / SAMM sheet convention: ``(4, 7)`` -> ``"4+7"``."""
    return "+".join(str(int(a)) for a in aus)


def _unique_samples(samples: np.ndarray) -> np.ndarray:
    """Event samples made distinct (MNE requires it): a repeat moves one sample later."""
    out = samples.copy()
    seen: set[int] = set()
    for i, s in enumerate(out):
        while int(s) in seen:
            s += 1
        out[i] = s
        seen.add(int(s))
    return out


def expression_epochs(
    store: MMHEStore,
    subject_id: str,
    tmin: float = -0.2,
    tmax: float = 0.8,
    *,
    baseline: tuple[float | None, float | None] | None = None,
    picks: str | Sequence[str] | None = None,
    lock: Literal["onset", "apex"] = "onset",
    kind: str | None = None,
) -> mne.EpochsArray:
    """One epoch per located expression, locked to its onset (or apex).

    tmin, tmax : window around the lock in seconds (both included, as `mne.Epochs`).
    baseline : as in MNE, e.g. ``(None, 0)``; None keeps the data as stored.
    picks : channel names or types (e.g. ``"eeg"``); None keeps every channel.
    lock : ``"onset"`` or ``"apex"``.
    kind : ``"ME"`` or ``"MaE"`` to keep one kind; None keeps both.
    Returns `mne.EpochsArray` (n_expressions, n_channels, n_times) in volts with the
    Quik-Cap montage and ``metadata``, one row per epoch: expression_id, subject_id,
    trial_index, marker, category, kind, emotion, compound, aus ("4+7"), the coding
    file's onset_s / apex_s / offset_s (seconds in the clip), onset_time / apex_time /
    offset_time (seconds on the EEG clock), apex_latency_s and offset_latency_s (seconds
    after the lock, i.e. in epoch time) and lock_sample. Windows that leave the
    recording are zero-filled there (counted in metadata ``samples_zero_filled``).
    ``events[:, 0]`` is the lock sample, except that an expression sharing its lock
    sample with an earlier one is listed one sample later (MNE needs distinct samples;
    the data and ``lock_sample`` are the true ones).
    """
    import mne

    if lock not in ("onset", "apex"):
        raise ConfigError(f"lock must be 'onset' or 'apex', got {lock!r}")
    if tmax <= tmin:
        raise ConfigError(f"tmax ({tmax}) must be after tmin ({tmin})")
    eeg = store.eeg(subject_id)
    sfreq = float(eeg.attrs["sfreq"])
    table = store.expressions(participant=subject_id, located=True, kind=kind)
    table = table[table[f"eeg_{lock}"].notna()].reset_index(drop=True)
    if not len(table):
        raise ConfigError(f"{subject_id}: no located expression with an EEG {lock}")
    lock_samples = table[f"eeg_{lock}"].astype("int64").to_numpy()
    first, last = round(tmin * sfreq), round(tmax * sfreq)
    data = np.stack(
        [_session_window(store, subject_id, s + first, s + last + 1) for s in lock_samples]
    )
    n_total = _n_session_samples(store, subject_id)
    zero_filled = np.maximum(0, -(lock_samples + first)) + np.maximum(
        0, lock_samples + last + 1 - n_total
    )
    pairs = list(zip(table["kind"], table["emotion"], strict=True))
    names = [expression_event_name(k, e) for k, e in pairs]
    values = [expression_event_value(k, e) for k, e in pairs]
    events = np.column_stack(
        [_unique_samples(lock_samples), np.zeros(len(table), np.int64), values]
    ).astype(np.int64)
    lock_time = lock_samples / sfreq
    metadata = pd.DataFrame(
        {
            "expression_id": table["expression_id"],
            "subject_id": table["subject_id"],
            "trial_index": table["trial_index"],
            "marker": table["marker"].astype("int64"),
            "category": table["category"],
            "kind": table["kind"],
            "emotion": table["emotion"],
            "compound": table["compound"],
            "aus": [aus_text(a) for a in table["aus"]],
            "onset_s": table["onset_s"],
            "apex_s": table["apex_s"],
            "offset_s": table["offset_s"],
            "onset_time": table["eeg_onset"].astype(float) / sfreq,
            "apex_time": table["eeg_apex"].astype(float) / sfreq,
            "offset_time": table["eeg_offset"].astype(float) / sfreq,
            "apex_latency_s": table["eeg_apex"].astype(float) / sfreq - lock_time,
            "offset_latency_s": table["eeg_offset"].astype(float) / sfreq - lock_time,
            "lock_sample": lock_samples,
            "samples_zero_filled": zero_filled,
        }
    )
    epochs = mne.EpochsArray(
        data,
        _info(eeg),
        events=events,
        tmin=first / sfreq,
        event_id=dict(sorted(zip(names, values, strict=True))),
        baseline=baseline,
        metadata=metadata,
        verbose="error",
    )
    return epochs if picks is None else epochs.pick(picks)


def _n_session_samples(store: MMHEStore, subject_id: str) -> int:
    group = store._group(subject_id)
    if "eeg_continuous" in group:
        return int(group["eeg_continuous"].shape[1])
    trials = store.trials(participant=subject_id)
    return int((trials["eeg_start"] + trials["n_eeg_samples"]).max())


def trial_epochs(
    store: MMHEStore,
    subject_id: str,
    tmin: float = 0.0,
    tmax: float | None = None,
    *,
    baseline: tuple[float | None, float | None] | None = None,
    picks: str | Sequence[str] | None = None,
    pad: Literal["zeros", "recording"] = "zeros",
) -> mne.EpochsArray:
    """One epoch per stimulus trial (rest block included), locked to its marker.

    tmin, tmax : seconds around the marker; tmax None = the longest trial's duration, so
        no trial is cut short.
    pad : what fills an epoch after its trial's end (the next marker): ``"zeros"`` (0 V,
        so a trial never shows another clip's EEG) or ``"recording"`` (the EEG that was
        recorded next). Samples before the marker (tmin < 0) are always the recording.
        Outside the recording both rules give zeros.
    Returns `mne.EpochsArray` in volts with the Quik-Cap montage; event names
    ``<category>/<marker>``, values the markers; ``metadata``: trial_index, marker,
    category, onset_time (s on the EEG clock), duration_s (the trial's true length),
    n_expressions and samples_zero_filled.
    """
    import mne

    if pad not in ("zeros", "recording"):
        raise ConfigError(f"pad must be 'zeros' or 'recording', got {pad!r}")
    eeg = store.eeg(subject_id)
    sfreq = float(eeg.attrs["sfreq"])
    trials = store.trials(participant=subject_id).sort_values("trial_index")
    trials = trials.reset_index(drop=True)
    duration = (trials["end_s"] - trials["onset_s"]).to_numpy(float)
    if tmax is None:
        tmax = float(duration.max()) - 1.0 / sfreq
    if tmax <= tmin:
        raise ConfigError(f"tmax ({tmax}) must be after tmin ({tmin})")
    first, last = round(tmin * sfreq), round(tmax * sfreq)
    markers = np.rint(trials["onset_s"].to_numpy(float) * sfreq).astype(np.int64)
    n_total = _n_session_samples(store, subject_id)
    data, zero_filled = [], []
    width = last - first + 1
    for marker, length in zip(markers, np.rint(duration * sfreq).astype(np.int64), strict=True):
        outside = max(0, -(marker + first)) + max(0, marker + last + 1 - n_total)
        if pad == "zeros":  # read the trial's own samples only (works without continuous EEG)
            inside = int(np.clip(length - first, 0, width))  # window samples before the end
            window = np.zeros((eeg.shape[1], width))
            if inside:
                window[:, :inside] = _session_window(
                    store, subject_id, marker + first, marker + first + inside
                )
            outside = max(outside, width - inside)
        else:
            window = _session_window(store, subject_id, marker + first, marker + last + 1)
        data.append(window)
        zero_filled.append(outside)
    expressions = store.expressions(participant=subject_id)
    per_trial = (
        expressions["trial_index"].value_counts() if len(expressions) else pd.Series(dtype=int)
    )
    codes = trials["code"].astype("int64").to_numpy()
    names = [f"{c}/{m}" for c, m in zip(trials["category"], codes, strict=True)]
    metadata = pd.DataFrame(
        {
            "subject_id": trials["subject_id"],
            "trial_index": trials["trial_index"],
            "marker": codes,
            "category": trials["category"],
            "onset_time": trials["onset_s"].astype(float),
            "duration_s": duration,
            "n_expressions": [int(per_trial.get(i, 0)) for i in trials["trial_index"]],
            "samples_zero_filled": zero_filled,
        }
    )
    events = np.column_stack([_unique_samples(markers), np.zeros_like(codes), codes])
    epochs = mne.EpochsArray(
        np.stack(data),
        _info(eeg),
        events=events,
        tmin=first / sfreq,
        event_id=dict(sorted(set(zip(names, codes.tolist(), strict=True)))),
        baseline=baseline,
        metadata=metadata,
        verbose="error",
    )
    return epochs if picks is None else epochs.pick(picks)
