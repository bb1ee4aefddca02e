"""Event-related physiology: responses to an expression relative to its pre-onset baseline.

NeuroKit2's event-related conventions (``ecg_eventrelated``, ``eda_eventrelated``,
``rsp_eventrelated``; Makowski et al. 2021): a rate is a continuous signal interpolated
between beats or breaths (``signal_rate``, monotone cubic), its baseline is the value at
the event (t = 0), and a change is the mean after the event minus that baseline. Skin
conductance responses count when their onset falls 1-5 s after the event (the latency
window of event-related SCRs, Boucsein 2012 "Electrodermal Activity", 2nd ed.: responses
begin 1-3 s after a stimulus and rarely later than 5 s).

Features per event (`EVENT_FEATURES`, all floats):

``ECG_rate_change_bpm``        mean heart rate over (0, `RESPONSE_S`] minus the rate at 0
``ECG_rate_max_change_bpm``    its maximum minus the rate at 0 (bpm)
``ECG_rate_min_change_bpm``    its minimum minus the rate at 0 (bpm; deceleration < 0)
``EDA_scr_event``              1 when an SCR starts 1-5 s after the event, else 0
``EDA_scr_onset_latency_s``    seconds from the event to that SCR's onset (NaN when none)
``EDA_scr_amplitude_us``       its amplitude, onset to peak, microsiemens (NaN when none)
``RSP_rate_change_per_min``    mean breathing rate over (0, `RESPONSE_S`] minus the rate
                               at 0 (breaths per minute)

Beats (artefact-corrected, `mmhe.features.cardiac`), SCRs and breaths are found once on
the whole trial (`trial_series`), so an expression 2 s into a clip still has context;
`event_features` then reads each expression from those series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import neurokit2 as nk
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from mmhe.features._physio_common import NK_FAILURES, longest_finite, nk_rate, quietly
from mmhe.features.cardiac import detect_beats

RESPONSE_S = 6.0
"""Seconds after the event over which rate changes are averaged (the physiology window
ends 6 s after onset, `mmhe.features.windows.PHYSIO_WINDOW`)."""
SCR_LATENCY_S = (1.0, 5.0)
EVENT_FEATURES: tuple[str, ...] = (
    "ECG_rate_change_bpm",
    "ECG_rate_max_change_bpm",
    "ECG_rate_min_change_bpm",
    "EDA_scr_event",
    "EDA_scr_onset_latency_s",
    "EDA_scr_amplitude_us",
    "RSP_rate_change_per_min",
)


@dataclass(frozen=True)
class TrialSeries:
    """Continuous rates and SCRs of one trial, on its samples (time 0 = first sample).

    heart_rate, breathing_rate : shape (n_samples,), bpm / breaths per minute, NaN outside
        the analysed stretch or when the signal was unusable.
    scr_onsets, scr_amplitudes : sample index and amplitude (uS) of each SCR.
    flags : why a series is missing.
    """

    sfreq: float
    heart_rate: NDArray[np.float64]
    breathing_rate: NDArray[np.float64]
    scr_onsets: NDArray[np.int64]
    scr_amplitudes: NDArray[np.float64]
    flags: tuple[str, ...]


def _finite_stretch(x: NDArray[np.float64]) -> tuple[int, NDArray[np.float64]]:
    start, stop = longest_finite(x)
    return start, x[start:stop]


def _rate_series(peaks: NDArray[np.int64], sfreq: float, start: int, n: int) -> NDArray[np.float64]:
    out = np.full(n, np.nan)
    if peaks.size < 3:
        return out
    stop = int(peaks[-1]) + 1
    rate = quietly(
        nk.signal_rate,
        peaks - peaks[0],
        sampling_rate=nk_rate(sfreq),
        desired_length=stop - int(peaks[0]),
        interpolation_method="monotone_cubic",
    )
    out[start + int(peaks[0]) : start + stop] = np.asarray(rate, dtype=np.float64)
    return out


def trial_series(signals: pd.DataFrame | Mapping[str, ArrayLike], sfreq: float) -> TrialSeries:
    """Heart rate (ECG, else PPG), breathing rate and SCRs of one whole trial.

    signals : canonical columns (ECG, PPG, RSP, EDA), shape (n_samples,) each, NaN = masked.
    """
    from mmhe.features.physio import _breaths, _eda_scrs

    n = len(next(iter(signals.values())) if isinstance(signals, Mapping) else signals)
    flags: list[str] = []
    heart = np.full(n, np.nan)
    for column, kind in (("ECG", "ecg"), ("PPG", "ppg")):
        if column not in signals:
            continue
        start, x = _finite_stretch(np.asarray(signals[column], dtype=np.float64))
        try:
            heart = _rate_series(detect_beats(x, sfreq, kind).peaks, sfreq, start, n)
        except NK_FAILURES as error:
            flags.append(f"{column}: beat detection failed: {error}")
            continue
        if np.isfinite(heart).any():
            break
    breathing = np.full(n, np.nan)
    if "RSP" in signals:
        start, x = _finite_stretch(np.asarray(signals["RSP"], dtype=np.float64))
        try:
            breathing = _rate_series(_breaths(x, sfreq)[0], sfreq, start, n)
        except NK_FAILURES as error:
            flags.append(f"RSP: breath detection failed: {error}")
    onsets, amplitudes = np.empty(0, np.int64), np.empty(0)
    if "EDA" in signals:
        start, x = _finite_stretch(np.asarray(signals["EDA"], dtype=np.float64))
        try:
            onsets, amplitudes = _eda_scrs(x, sfreq)
            onsets = onsets + start
        except NK_FAILURES as error:
            flags.append(f"EDA: SCR detection failed: {error}")
    return TrialSeries(float(sfreq), heart, breathing, onsets, amplitudes, tuple(flags))


def _change(rate: NDArray[np.float64], onset: int, stop: int) -> tuple[float, float, float]:
    """(mean - baseline, max - baseline, min - baseline) after `onset`; NaN if unknown."""
    if not 0 <= onset < rate.size or not np.isfinite(rate[onset]):
        return math.nan, math.nan, math.nan
    after = rate[onset + 1 : stop]
    after = after[np.isfinite(after)]
    if after.size == 0:
        return math.nan, math.nan, math.nan
    baseline = rate[onset]
    return (
        float(after.mean() - baseline),
        float(after.max() - baseline),
        float(after.min() - baseline),
    )


def event_features(series: TrialSeries, onset_s: float) -> dict[str, float]:
    """`EVENT_FEATURES` of one event at `onset_s` seconds into the trial (see module)."""
    sfreq = series.sfreq
    onset = round(onset_s * sfreq)
    stop = onset + round(RESPONSE_S * sfreq) + 1
    mean, high, low = _change(series.heart_rate, onset, stop)
    out = {
        "ECG_rate_change_bpm": mean,
        "ECG_rate_max_change_bpm": high,
        "ECG_rate_min_change_bpm": low,
        "RSP_rate_change_per_min": _change(series.breathing_rate, onset, stop)[0],
    }
    first, last = (onset + round(s * sfreq) for s in SCR_LATENCY_S)
    inside = np.flatnonzero((series.scr_onsets >= first) & (series.scr_onsets <= last))
    if inside.size:
        k = int(inside[0])
        out.update(
            EDA_scr_event=1.0,
            EDA_scr_onset_latency_s=float((series.scr_onsets[k] - onset) / sfreq),
            EDA_scr_amplitude_us=float(series.scr_amplitudes[k]),
        )
    else:
        out.update(
            EDA_scr_event=0.0, EDA_scr_onset_latency_s=math.nan, EDA_scr_amplitude_us=math.nan
        )
    return {name: out[name] for name in EVENT_FEATURES}
