"""Peripheral physiology features (BIOPAC channels) with NeuroKit2.

Every function takes one segment (a 1-D array in the channel's recorded units) and its
sampling rate in Hz, passes ``sampling_rate`` explicitly to every NeuroKit2 call
(Makowski et al. 2021, "NeuroKit2: A Python toolbox for neurophysiological signal
processing", Behav. Res. Methods 53) and returns a `PhysioResult`:

``features``
    ``{name: float}`` with a fixed set of names per signal (the same keys whatever
    happens, so rows of a feature table line up). A value that cannot be trusted is NaN.
``flags``
    one string per problem found in the segment, e.g. ``"heart rate 250.0 bpm outside
    30-220 bpm"``. An empty list means the segment passed every check.

A bad segment (too short, flat, infinite samples, implausible heart or breathing rate,
too few beats, a NeuroKit2 failure) never raises: its values become NaN and the reason is
flagged. NaN samples are data masked at read time (`mmhe.io.physio_checks`): the longest
finite stretch is analysed when it holds at least half the segment, with a flag.
Only bad arguments (not 1-D, non-numeric, non-positive ``sfreq``, unknown
``kind``) raise `mmhe.errors.ConfigError`.

``result.features`` / ``result.flags`` or ``features, flags = result``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import neurokit2 as nk
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mmhe.errors import ConfigError
from mmhe.features._physio_common import (
    MIN_DURATION_S,
    NK_FAILURES,
    PhysioResult,
    check_arguments,
    nan_result,
    nk_rate,
    quietly,
    reused,
    valid_part,
)
from mmhe.features.cardiac import (
    CARDIAC_FEATURES,
    HEART_RATE_RANGE_BPM,
    HRV_MIN_DURATION_S,
    QualityMethod,
    cardiac_features,
    heart_rate,
)

__all__ = [
    "CARDIAC_FEATURES",
    "EDA_FEATURES",
    "HEART_RATE_RANGE_BPM",
    "HRV_MIN_DURATION_S",
    "MIN_DURATION_S",
    "PHYSIO_CHANNELS",
    "PhysioResult",
    "ecg_features",
    "eda_features",
    "emg_features",
    "heart_rate",
    "physio_feature_names",
    "physio_features",
    "ppg_features",
    "rsp_features",
    "skin_temperature_features",
]

BREATHING_RATE_RANGE_PER_MIN = (4.0, 40.0)
"""Plausible breathing rates (breaths per minute); outside -> NaN and a flag."""
SCR_MIN_AMPLITUDE = 0.01
"""Smallest SCR counted, in the EDA channel's unit (microsiemens): the usual minimum
amplitude criterion (Boucsein 2012, "Electrodermal Activity", 2nd ed.)."""
EMG_MIN_SFREQ = 250.0
"""NeuroKit2's EMG cleaning is a 100 Hz high-pass; below this rate it is skipped."""

PHYSIO_CHANNELS: tuple[str, ...] = (
    "PPG",
    "RSP",
    "EDA",
    "ECG",
    "EMG_A",
    "EMG_B",
    "SKT_A",
    "SKT_B",
)
"""Canonical physiology column names (the roles `mmhe.io.channel_roles` assigns)."""

EDA_FEATURES = ("tonic_mean", "scr_count", "scr_amplitude_mean")
RSP_FEATURES = ("rate_per_min", "amplitude_mean", "breath_interval_sd_s")
EMG_FEATURES = ("rms",)
SKT_FEATURES = ("mean", "slope_per_s")


def ecg_features(
    signal: ArrayLike, sfreq: float, *, quality: QualityMethod = "correlation"
) -> PhysioResult:
    """Heart rate and time-domain HRV of an ECG segment, from artefact-corrected R peaks.

    signal : array, shape (n_samples,), ECG (any unit); sfreq : Hz
    Features (`mmhe.features.cardiac.cardiac_features`): ``rate_bpm``, ``rmssd_ms``,
    ``sdnn_ms``, ``pnn50_percent`` (Task Force 1996 definitions as NeuroKit2 computes
    them; NaN on windows shorter than `HRV_MIN_DURATION_S`), ``quality`` (beat template
    correlation, 0-1), ``n_beats``, ``n_corrected`` (Kubios artefact correction).
    """
    return cardiac_features(signal, sfreq, "ecg", quality=quality)


def ppg_features(
    signal: ArrayLike, sfreq: float, *, quality: QualityMethod = "correlation"
) -> PhysioResult:
    """Pulse rate and time-domain pulse-rate variability of a PPG segment.

    signal : array, shape (n_samples,), PPG (any unit); sfreq : Hz
    Features as `ecg_features`, from the artefact-corrected systolic peaks of NeuroKit2's
    Elgendi detector.
    """
    return cardiac_features(signal, sfreq, "ppg", quality=quality)


# ----------------------------------------------------------------- EDA, RSP, EMG, SKT


def eda_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Tonic level and skin conductance responses of an EDA segment.

    signal : array, shape (n_samples,), skin conductance in microsiemens; sfreq : Hz
    The NeuroKit2 steps of ``eda_process`` whose outputs are used (``eda_clean`` 3 Hz
    low-pass, ``eda_phasic`` high-pass tonic/phasic split, ``eda_peaks`` on the phasic
    part), same values. Features: ``tonic_mean`` (mean tonic level, uS),
    ``scr_count`` (SCRs with amplitude >= `SCR_MIN_AMPLITUDE`), ``scr_amplitude_mean``
    (their mean amplitude, uS; NaN when there is none, which is not a flag).
    """
    x, problem, flags = valid_part(check_arguments(signal, sfreq), sfreq, "eda")
    if x is None:
        return nan_result(EDA_FEATURES, [*flags, problem])
    try:
        tonic, info = _eda_decomposition(x, sfreq)
    except NK_FAILURES as error:
        return nan_result(EDA_FEATURES, [*flags, f"NeuroKit2 EDA processing failed: {error}"])
    amplitudes = np.asarray(info["SCR_Amplitude"], dtype=np.float64)
    amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes >= SCR_MIN_AMPLITUDE)]
    features = {
        "tonic_mean": float(tonic.mean()),
        "scr_count": float(amplitudes.size),
        "scr_amplitude_mean": float(amplitudes.mean()) if amplitudes.size else math.nan,
    }
    return PhysioResult(features, flags)


@reused
def _eda_decomposition(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, dict]:
    """(tonic level, SCR info with ``SCR_Onsets`` and ``SCR_Amplitude``): the steps of
    ``eda_process(method="neurokit")`` whose outputs are used (clean, high-pass phasic
    split, SCR peaks with amplitude_min 0.1, their amplitudes)."""
    rate = nk_rate(sfreq)
    cleaned = quietly(nk.eda_clean, x, sampling_rate=rate, method="neurokit")
    parts = quietly(nk.eda_phasic, cleaned, sampling_rate=rate, method="neurokit")
    phasic = parts["EDA_Phasic"].to_numpy()
    found = quietly(
        nk.eda_findpeaks, phasic, sampling_rate=rate, method="neurokit", amplitude_min=0.1
    )
    info = quietly(scr_amplitudes, quietly(nk.eda_fixpeaks, found), phasic)
    return parts["EDA_Tonic"].to_numpy(), info


def scr_amplitudes(info: dict, phasic: np.ndarray) -> dict:
    """``info`` of ``eda_findpeaks`` + ``eda_fixpeaks`` with ``SCR_Amplitude`` added (peak
    height minus the phasic level at its onset; NaN for a peak without a valid onset),
    computed as NeuroKit2's ``eda_peaks`` does.

    ``eda_peaks`` also finds every SCR's half-recovery point (a search per peak) and
    formats a per-sample DataFrame, a third of its EDA time; neither is used here. Raises
    ValueError where ``eda_peaks`` does (no onset, or onsets that do not pair with peaks).
    """
    onsets, peaks = info["SCR_Onsets"], info["SCR_Peaks"]
    valid_peaks = (peaks > np.nanmin(onsets)) & ~np.isnan(onsets)
    valid_onsets = ~np.isnan(onsets)
    valid_onsets[valid_onsets] = onsets[valid_onsets] < np.nanmax(peaks)
    paired = onsets[valid_onsets].astype(int)
    if paired.size != np.count_nonzero(valid_peaks):
        raise ValueError("SCR peaks and onsets do not pair, so no amplitude is safe")
    amplitude = np.full(len(info["SCR_Height"]), np.nan)
    amplitude[valid_peaks] = info["SCR_Height"][valid_peaks] - phasic[paired]
    return {**info, "SCR_Amplitude": amplitude}


def _eda_scrs(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """(onset sample, amplitude in uS) of each SCR of at least `SCR_MIN_AMPLITUDE`."""
    _, info = _eda_decomposition(x, sfreq)
    onsets = np.asarray(info["SCR_Onsets"], dtype=np.float64)
    amplitudes = np.asarray(info["SCR_Amplitude"], dtype=np.float64)
    keep = np.isfinite(onsets) & np.isfinite(amplitudes) & (amplitudes >= SCR_MIN_AMPLITUDE)
    return onsets[keep].astype(np.int64), amplitudes[keep]


def rsp_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Breathing rate, amplitude and variability of a respiration segment.

    signal : array, shape (n_samples,), respiration belt (any unit); sfreq : Hz
    NeuroKit2's Khodadad et al. (2018) cleaning and breath detection (`_breaths`).
    Features: ``rate_per_min`` (60 / mean breath-to-breath interval, breaths per minute),
    ``amplitude_mean`` (mean NeuroKit2 ``RSP_Amplitude`` at the inhalation peaks, signal
    units), ``breath_interval_sd_s`` (SD, ddof 1, of the breath-to-breath intervals in
    seconds: NeuroKit2's ``RRV_SDBB`` / 1000, computed directly because ``rsp_rrv``'s
    frequency-domain indices need minutes of signal; needs 3 breaths).
    """
    x, problem, flags = valid_part(check_arguments(signal, sfreq), sfreq, "rsp")
    if x is None:
        return nan_result(RSP_FEATURES, [*flags, problem])
    try:
        peaks, amplitude = _breaths(x, sfreq)
    except NK_FAILURES as error:
        return nan_result(RSP_FEATURES, [*flags, f"NeuroKit2 breath detection failed: {error}"])
    if peaks.size < 2:
        return nan_result(
            RSP_FEATURES, [*flags, f"{peaks.size} breath(s) detected; a breathing rate needs 2"]
        )
    intervals = np.diff(peaks) / sfreq
    rate = 60.0 / float(intervals.mean())
    low, high = BREATHING_RATE_RANGE_PER_MIN
    if not low <= rate <= high:
        return nan_result(
            RSP_FEATURES, [*flags, f"breathing rate {rate:.1f} /min outside {low:g}-{high:g} /min"]
        )
    features = {
        "rate_per_min": rate,
        "amplitude_mean": float(np.nanmean(amplitude[peaks])),
        "breath_interval_sd_s": math.nan,
    }
    if intervals.size >= 2:
        features["breath_interval_sd_s"] = float(np.std(intervals, ddof=1))
    else:
        flags.append(f"{peaks.size} breaths detected; variability needs at least 3")
    return PhysioResult(features, flags)


@reused
def _breaths(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """(inhalation peak indices, amplitude per sample): the steps of ``rsp_process``
    (Khodadad 2018) whose outputs are used: ``rsp_clean``, ``rsp_peaks`` (amplitude_min
    0.3) and ``rsp_amplitude``; same values, ~25x faster (no phase, rate, symmetry, RVT)."""
    rate = nk_rate(sfreq)
    cleaned = quietly(nk.rsp_clean, x, sampling_rate=rate, method="khodadad2018")
    peak_signal, info = quietly(
        nk.rsp_peaks, cleaned, sampling_rate=rate, method="khodadad2018", amplitude_min=0.3
    )
    amplitude = np.asarray(quietly(nk.rsp_amplitude, cleaned, peak_signal), dtype=np.float64)
    return np.asarray(info["RSP_Peaks"], dtype=np.int64), amplitude


def emg_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Root mean square of an EMG segment.

    signal : array, shape (n_samples,), EMG in volts (or the recorded unit); sfreq : Hz
    Feature ``rms`` (same unit as the signal) of the NeuroKit2 ``emg_clean`` output
    (4th-order 100 Hz Butterworth high-pass, zero-phase, mean removed). Below
    `EMG_MIN_SFREQ` the high-pass is impossible: the RMS of the mean-removed signal is
    returned with a flag saying so.
    """
    x, problem, flags = valid_part(check_arguments(signal, sfreq), sfreq, "emg")
    if x is None:
        return nan_result(EMG_FEATURES, [*flags, problem])
    if sfreq < EMG_MIN_SFREQ:
        cleaned = x - x.mean()
        flags.append(
            f"sampling rate {sfreq:g} Hz below {EMG_MIN_SFREQ:g} Hz: RMS of the uncleaned "
            "(mean-removed) signal"
        )
    else:
        try:
            cleaned = np.asarray(quietly(nk.emg_clean, x, sampling_rate=nk_rate(sfreq)))
        except NK_FAILURES as error:
            return nan_result(EMG_FEATURES, [*flags, f"NeuroKit2 emg_clean failed: {error}"])
    return PhysioResult({"rms": float(np.sqrt(np.mean(cleaned**2)))}, flags)


def skin_temperature_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Mean and linear trend of a skin temperature segment.

    signal : array, shape (n_samples,), degrees Celsius; sfreq : Hz
    Features ``mean`` (deg C) and ``slope_per_s`` (deg C per second): the least-squares
    line through the samples against time ``t = arange(n) / sfreq`` (NeuroKit2 has no
    skin-temperature module).
    """
    x, problem, flags = valid_part(check_arguments(signal, sfreq), sfreq, "skt")
    if x is None:
        return nan_result(SKT_FEATURES, [*flags, problem])
    t = np.arange(x.size) / sfreq
    t_centred = t - t.mean()
    slope = float(np.dot(t_centred, x - x.mean()) / np.dot(t_centred, t_centred))
    return PhysioResult({"mean": float(x.mean()), "slope_per_s": slope}, flags)


# ----------------------------------------------------------------- all channels

_CHANNEL_FUNCTIONS: dict[str, tuple[Callable[[ArrayLike, float], PhysioResult], tuple[str, ...]]]
_CHANNEL_FUNCTIONS = {
    "PPG": (ppg_features, CARDIAC_FEATURES),
    "RSP": (rsp_features, RSP_FEATURES),
    "EDA": (eda_features, EDA_FEATURES),
    "ECG": (ecg_features, CARDIAC_FEATURES),
    "EMG_A": (emg_features, EMG_FEATURES),
    "EMG_B": (emg_features, EMG_FEATURES),
    "SKT_A": (skin_temperature_features, SKT_FEATURES),
    "SKT_B": (skin_temperature_features, SKT_FEATURES),
}


def physio_feature_names() -> list[str]:
    """Every key `physio_features` returns, in order (``"<channel>_<feature>"``)."""
    return [
        f"{channel}_{name}"
        for channel in PHYSIO_CHANNELS
        for name in _CHANNEL_FUNCTIONS[channel][1]
    ]


def _absent(channel: str, columns: list[str]) -> str:
    """Why a channel is not in a segment: only a derived channel of its kind, or none."""
    kind = channel.split("_")[0]
    derived = [c for c in columns if c.startswith(f"{kind}_") and c not in PHYSIO_CHANNELS]
    if derived:
        return (
            f"only derived channel(s) {', '.join(derived)} in the recording; "
            f"{channel} features need the raw signal"
        )
    return "channel missing from the recording"


def physio_features(
    signals: pd.DataFrame | Mapping[str, ArrayLike],
    sfreq: float,
    *,
    quality: QualityMethod = "correlation",
) -> PhysioResult:
    """Features of every physiology channel of one segment.

    signals : DataFrame (or mapping) with the canonical columns `PHYSIO_CHANNELS`
        (PPG RSP EDA ECG EMG_A EMG_B SKT_A SKT_B, as `mmhe.io.biopac.read_biopac` names
        them from the channel-role table), one segment, recorded units; NaN = masked
    sfreq : sampling rate in Hz
    quality : cardiac signal quality method (see `mmhe.features.cardiac.cardiac_features`)
    Returns `PhysioResult` with the keys of `physio_feature_names` (e.g. ``ECG_rate_bpm``,
    ``EDA_scr_count``, ``SKT_A_slope_per_s``) and flags prefixed with the channel
    (``"RSP: breathing rate 52.0 /min outside 4-40 /min"``). A missing column gives NaN
    features and a flag ("missing" only when no channel of the kind exists, not even a
    derived one such as EDA_DIFF); other columns are ignored.
    """
    if not isinstance(signals, pd.DataFrame | Mapping):
        raise ConfigError(
            f"signals must be a DataFrame with columns {', '.join(PHYSIO_CHANNELS)}, "
            f"got {type(signals).__name__}"
        )
    columns = [str(c) for c in signals]
    features: dict[str, float] = {}
    flags: list[str] = []
    for channel in PHYSIO_CHANNELS:
        function, names = _CHANNEL_FUNCTIONS[channel]
        if channel not in signals:
            result = nan_result(names, [_absent(channel, columns)])
        elif function in (ecg_features, ppg_features):
            result = function(np.asarray(signals[channel]), sfreq, quality=quality)
        else:
            result = function(np.asarray(signals[channel]), sfreq)
        features.update({f"{channel}_{name}": value for name, value in result.features.items()})
        flags.extend(f"{channel}: {flag}" for flag in result.flags)
    return PhysioResult(features, flags)
