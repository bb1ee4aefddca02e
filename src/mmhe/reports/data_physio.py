"""Physiology around expression onset: heart rate, skin conductance and respiration rate
locked to each expression's onset, mean ± SE per class.

Per trial of the store's BIOPAC signals the continuous heart rate (ECG, else PPG) and
breathing rate come from `mmhe.features.physio_events.trial_series` (artefact-corrected
beats, NeuroKit2's rate interpolation), the skin conductance is NeuroKit2's cleaned EDA
(`eda_clean`, microsiemens). Each expression contributes the window `WINDOW_S` around its
onset, binned to `BIN_S`, as the change from the mean of the second before onset (the
event-related convention of NeuroKit2's ``*_eventrelated``). The curves of a class are
averaged over its expressions; the band is ± one standard error of that mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

WINDOW_S = (-2.0, 8.0)
BIN_S = 0.25
BASELINE_S = (-1.0, 0.0)
SIGNALS = (
    ("heart_rate", "heart rate", "bpm"),
    ("skin_conductance", "skin conductance", "µS"),
    ("breathing_rate", "respiration rate", "breaths/min"),
)
"""(key, name, unit) of the three curves."""


@dataclass(frozen=True)
class EventLocked:
    """Onset-locked curves of every expression: ``curves`` (N, 3, T) change from the
    pre-onset baseline in the units of `SIGNALS` (NaN where a signal was unusable),
    ``times`` (T,) bin centres in s, ``table`` one row per expression (expression_id,
    subject_id, kind, emotion, compound)."""

    times: np.ndarray
    curves: np.ndarray
    table: pd.DataFrame


def _binned(signal: np.ndarray, centre: int, sfreq: float) -> np.ndarray:
    """Mean of `signal` in bins of BIN_S over WINDOW_S around sample `centre` (NaN
    outside the recording)."""
    per_bin = round(BIN_S * sfreq)
    first = centre + round(WINDOW_S[0] * sfreq)
    n_bins = round((WINDOW_S[1] - WINDOW_S[0]) / BIN_S)
    out = np.full(n_bins * per_bin, np.nan)
    lo, hi = max(first, 0), min(first + out.size, signal.size)
    if hi > lo:
        out[lo - first : hi - first] = signal[lo:hi]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(out.reshape(n_bins, per_bin), axis=1)


def bin_times() -> np.ndarray:
    """Bin centres (s from onset) of the curves."""
    n_bins = round((WINDOW_S[1] - WINDOW_S[0]) / BIN_S)
    return WINDOW_S[0] + BIN_S * (np.arange(n_bins) + 0.5)


def _skin_conductance(eda: np.ndarray, sfreq: float) -> np.ndarray:
    import neurokit2 as nk

    from mmhe.features._physio_common import NK_FAILURES, longest_finite, nk_rate, quietly

    out = np.full(eda.size, np.nan)
    start, stop = longest_finite(eda)
    if stop - start < 4 * sfreq:
        return out
    try:
        out[start:stop] = quietly(
            nk.eda_clean, eda[start:stop], sampling_rate=nk_rate(sfreq), method="neurokit"
        )
    except NK_FAILURES:
        pass
    return out


def event_locked(store, samples: str = "ME") -> EventLocked:
    """Onset-locked heart rate, skin conductance and respiration rate of every located
    expression of `samples` ("ME", "MaE" or "both") with BIOPAC data."""
    from mmhe.features.physio_events import trial_series

    times = bin_times()
    baseline = (times >= BASELINE_S[0]) & (times < BASELINE_S[1])
    curves, rows = [], []
    for sid in store.participant_ids():
        expressions = store.expressions(participant=sid)
        if samples in ("ME", "MaE"):
            expressions = expressions[expressions["kind"] == samples]
        expressions = expressions[
            expressions["physio_onset"].notna() & expressions["trial_index"].notna()
        ]
        if expressions.empty:
            continue
        try:
            array = store.physio(sid)
        except KeyError:
            continue
        sfreq = float(array.attrs["sfreq"])
        channels = list(array.attrs["channels"])
        trials = store.trials(participant=sid).set_index("trial_index")
        for trial_index, group in expressions.groupby("trial_index"):
            trial = trials.loc[int(trial_index)]
            n = int(trial["n_physio_samples"])
            if pd.isna(trial["physio_start"]) or n == 0:
                continue
            data = np.asarray(array[int(trial_index), :, :n], dtype=np.float64)
            signals = {name: data[i] for i, name in enumerate(channels)}
            series = trial_series(signals, sfreq)
            conductance = (
                _skin_conductance(signals["EDA"], sfreq) if "EDA" in signals else np.full(n, np.nan)
            )
            for row in group.itertuples(index=False):
                centre = int(row.physio_onset) - int(trial["physio_start"])
                stack = np.stack(
                    [
                        _binned(series.heart_rate, centre, sfreq),
                        _binned(conductance, centre, sfreq),
                        _binned(series.breathing_rate, centre, sfreq),
                    ]
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    stack -= np.nanmean(stack[:, baseline], axis=1, keepdims=True)
                curves.append(stack)
                rows.append(
                    {
                        "expression_id": row.expression_id,
                        "subject_id": sid,
                        "kind": row.kind,
                        "emotion": row.emotion,
                        "compound": row.compound,
                    }
                )
    shape = (0, len(SIGNALS), times.size)
    return EventLocked(
        times,
        np.stack(curves) if curves else np.zeros(shape),
        pd.DataFrame(rows, columns=["expression_id", "subject_id", "kind", "emotion", "compound"]),
    )


def class_means(locked: EventLocked, column: str) -> dict[str, tuple[np.ndarray, ...]]:
    """{class: (mean (3, T), standard error (3, T), n (3, T) expressions with data)}."""
    out = {}
    for name, rows in locked.table.groupby(column, sort=False):
        data = locked.curves[rows.index.to_numpy()]
        n = np.isfinite(data).sum(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(data, axis=0)
            sd = np.nanstd(data, axis=0, ddof=1)
        se = np.where(n > 1, sd / np.sqrt(np.maximum(n, 1)), np.nan)
        out[str(name)] = (mean, se, n)
    return out


def event_figure(
    locked: EventLocked, column: str, order: list[str] | None = None, *, narrow: bool = False
):
    """Three panels (heart rate, skin conductance, respiration rate): per class the mean
    change from the pre-onset second, shaded ± SE; the onset at 0 s (`narrow`: stacked)."""
    import matplotlib.pyplot as plt

    means = class_means(locked, column)
    names = [n for n in (order or []) if n in means] + [n for n in means if n not in (order or [])]
    shape, size = ((3, 1), (5.0, 9.0)) if narrow else ((1, 3), (10.5, 3.5))
    fig, axes = plt.subplots(*shape, figsize=size, layout="constrained", sharex=True)
    palette = plt.get_cmap("tab10")
    for j, (ax, (_, title, unit)) in enumerate(zip(axes, SIGNALS, strict=True)):
        for i, name in enumerate(names):
            mean, se, n = means[name]
            if not np.isfinite(mean[j]).any():
                continue
            color = palette(i % 10)
            ax.plot(
                locked.times,
                mean[j],
                color=color,
                linewidth=1.6,
                label=f"{name} (n = {int(n[j].max()):,})",
            )
            ax.fill_between(
                locked.times,
                mean[j] - se[j],
                mean[j] + se[j],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
        ax.axvline(0, color="#444", linewidth=0.8, linestyle="--")
        ax.axhline(0, color="#bbb", linewidth=0.6)
        ax.set_title(title)
        ax.set_ylabel(f"change, {unit}")
        ax.set_xlabel("time from expression onset, s")
        ax.legend(
            fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2
        )
    return fig
