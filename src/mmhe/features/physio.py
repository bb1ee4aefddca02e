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

A bad segment (too short, flat, non-finite samples, implausible heart or breathing rate,
too few beats, a NeuroKit2 failure) never raises: its values become NaN and the reason is
flagged. Only bad arguments (not 1-D, non-numeric, non-positive ``sfreq``, unknown
``kind``) raise `mmhe.errors.ConfigError`.

``result.features`` / ``result.flags`` or ``features, flags = result``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

import neurokit2 as nk
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from mmhe.errors import ConfigError

HEART_RATE_RANGE_BPM = (30.0, 220.0)
"""Plausible heart rates (beats per minute); outside -> NaN and a flag."""
BREATHING_RATE_RANGE_PER_MIN = (4.0, 40.0)
"""Plausible breathing rates (breaths per minute); outside -> NaN and a flag."""
MIN_DURATION_S: dict[str, float] = {
    "ecg": 4.0,
    "ppg": 4.0,
    "eda": 4.0,
    "rsp": 15.0,
    "emg": 0.5,
    "skt": 1.0,
}
"""Shortest segment (seconds) each signal is analysed on; shorter -> NaN and a flag.
RSP needs one whole breath at the slowest plausible rate (4 /min = 15 s); NeuroKit2's
breath detection fails on two-breath segments, so 8-s expression windows are too short
for respiration (use `mmhe.features.windows.RSP_WINDOW` or the trial)."""
MIN_BEATS_HRV = 4
"""RMSSD needs two successive RR differences, so at least four beats."""
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
"""Canonical physiology column names (the BIOPAC channels of the MMHE recordings)."""

CARDIAC_FEATURES = ("rate_bpm", "rmssd_ms", "sdnn_ms", "pnn50_percent", "quality")
EDA_FEATURES = ("tonic_mean", "scr_count", "scr_amplitude_mean")
RSP_FEATURES = ("rate_per_min", "amplitude_mean", "breath_interval_sd_s")
EMG_FEATURES = ("rms",)
SKT_FEATURES = ("mean", "slope_per_s")

# What NeuroKit2 raises on segments it cannot process (e.g. IndexError when no peak is
# found, TypeError from signal_smooth on a very short signal).
_NK_FAILURES = (ValueError, IndexError, TypeError, ZeroDivisionError, np.linalg.LinAlgError)


class PhysioResult(NamedTuple):
    """Features of one segment and the problems found in it (see the module docstring)."""

    features: dict[str, float]
    flags: list[str]


# ----------------------------------------------------------------- helpers


def _nk_rate(sfreq: float) -> int | float:
    """The sampling rate as NeuroKit2 wants it: some of its paths index with it, so an
    integral rate must be a Python int (1000.0 -> 1000)."""
    return int(sfreq) if float(sfreq).is_integer() else float(sfreq)


def _check_arguments(signal: ArrayLike, sfreq: float) -> NDArray[np.float64]:
    try:
        array = np.asarray(signal, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("signal must be a 1-D array of numbers") from None
    if array.ndim != 1:
        raise ConfigError(f"signal must be 1-D (one channel), got shape {array.shape}")
    if not isinstance(sfreq, int | float | np.number) or not math.isfinite(sfreq) or sfreq <= 0:
        raise ConfigError(f"sfreq must be a positive number of Hz, got {sfreq!r}")
    return array


def _segment_problem(x: NDArray[np.float64], sfreq: float, kind: str) -> str | None:
    """Why a segment cannot be analysed at all, or None."""
    n_bad = int(np.count_nonzero(~np.isfinite(x)))
    if n_bad:
        return f"{n_bad} of {x.size} samples are not finite (NaN/inf)"
    duration = x.size / sfreq
    if duration < MIN_DURATION_S[kind]:
        return f"segment of {duration:.3g} s is shorter than {MIN_DURATION_S[kind]:g} s"
    if np.ptp(x) == 0.0:
        return f"flat signal (every sample equals {x[0]:g})"
    return None


def _nan_result(names: tuple[str, ...], flags: list[str]) -> PhysioResult:
    return PhysioResult(dict.fromkeys(names, math.nan), flags)


def _quietly(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Call NeuroKit2 without its warnings (every condition they report is flagged here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ----------------------------------------------------------------- cardiac


def _beats(
    x: NDArray[np.float64], sfreq: float, kind: str
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Cleaned signal and beat indices (R peaks or pulse-wave systolic peaks)."""
    if kind == "ecg":
        cleaned = _quietly(nk.ecg_clean, x, sampling_rate=_nk_rate(sfreq))
        _, info = _quietly(nk.ecg_peaks, cleaned, sampling_rate=_nk_rate(sfreq))
        peaks = info["ECG_R_Peaks"]
    else:
        cleaned = _quietly(nk.ppg_clean, x, sampling_rate=_nk_rate(sfreq))
        _, info = _quietly(nk.ppg_peaks, cleaned, sampling_rate=_nk_rate(sfreq))
        peaks = info["PPG_Peaks"]
    return np.asarray(cleaned, dtype=np.float64), np.asarray(peaks, dtype=np.int64)


def _rate_problem(peaks: NDArray[np.int64], sfreq: float) -> tuple[float, str | None]:
    if peaks.size < 2:
        return math.nan, f"{peaks.size} beat(s) detected; a heart rate needs at least 2"
    rate = 60.0 / float(np.mean(np.diff(peaks))) * sfreq
    low, high = HEART_RATE_RANGE_BPM
    if not low <= rate <= high:
        return math.nan, f"heart rate {rate:.1f} bpm outside {low:g}-{high:g} bpm"
    return rate, None


def _check_kind(kind: str) -> None:
    if kind not in ("ecg", "ppg"):
        raise ConfigError(f"kind={kind!r} is not 'ecg' or 'ppg'")


def heart_rate(signal: ArrayLike, sfreq: float, kind: Literal["ecg", "ppg"] = "ecg") -> float:
    """Mean heart rate of a segment in beats per minute.

    signal : array, shape (n_samples,), ECG or PPG in any unit
    sfreq : sampling rate in Hz; kind : ``"ecg"`` or ``"ppg"``
    Returns 60 / mean beat-to-beat interval, beats from NeuroKit2 (``ecg_clean`` +
    ``ecg_peaks``, or ``ppg_clean`` + ``ppg_peaks`` (Elgendi 2013)). NaN when the segment
    is unusable or the rate is outside 30-220 bpm; `ecg_features` / `ppg_features` say why.
    """
    x = _check_arguments(signal, sfreq)
    _check_kind(kind)
    if _segment_problem(x, sfreq, kind) is not None:
        return math.nan
    try:
        _, peaks = _beats(x, sfreq, kind)
    except _NK_FAILURES:
        return math.nan
    return _rate_problem(peaks, sfreq)[0]


def _cardiac_features(signal: ArrayLike, sfreq: float, kind: str) -> PhysioResult:
    x = _check_arguments(signal, sfreq)
    problem = _segment_problem(x, sfreq, kind)
    if problem is not None:
        return _nan_result(CARDIAC_FEATURES, [problem])
    try:
        cleaned, peaks = _beats(x, sfreq, kind)
    except _NK_FAILURES as error:
        return _nan_result(CARDIAC_FEATURES, [f"NeuroKit2 beat detection failed: {error}"])
    rate, problem = _rate_problem(peaks, sfreq)
    if problem is not None:
        return _nan_result(CARDIAC_FEATURES, [problem])

    features = dict.fromkeys(CARDIAC_FEATURES, math.nan)
    flags: list[str] = []
    features["rate_bpm"] = rate
    quality_function = nk.ecg_quality if kind == "ecg" else nk.ppg_quality
    try:
        quality = _quietly(
            quality_function, cleaned, peaks, sampling_rate=_nk_rate(sfreq), method="templatematch"
        )
        features["quality"] = float(np.nanmean(quality))
    except _NK_FAILURES as error:
        flags.append(f"NeuroKit2 signal quality failed: {error}")
    if peaks.size < MIN_BEATS_HRV:
        flags.append(f"{peaks.size} beats detected; HRV needs at least {MIN_BEATS_HRV}")
        return PhysioResult(features, flags)
    try:
        hrv = _quietly(nk.hrv_time, peaks, sampling_rate=_nk_rate(sfreq))
    except _NK_FAILURES as error:
        flags.append(f"NeuroKit2 hrv_time failed: {error}")
        return PhysioResult(features, flags)
    features["rmssd_ms"] = float(hrv["HRV_RMSSD"].iloc[0])
    features["sdnn_ms"] = float(hrv["HRV_SDNN"].iloc[0])
    features["pnn50_percent"] = float(hrv["HRV_pNN50"].iloc[0])
    return PhysioResult(features, flags)


def ecg_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Heart rate and time-domain HRV of an ECG segment.

    signal : array, shape (n_samples,), ECG (any unit); sfreq : Hz
    Features: ``rate_bpm`` (60 / mean RR), ``rmssd_ms``, ``sdnn_ms``, ``pnn50_percent``
    (NeuroKit2 ``hrv_time`` on the R peaks of ``ecg_peaks``; Task Force 1996 definitions),
    ``quality`` (mean NeuroKit2 ``ecg_quality`` template match, 0-1; low on noise).
    """
    return _cardiac_features(signal, sfreq, "ecg")


def ppg_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Pulse rate and time-domain pulse-rate variability of a PPG segment.

    signal : array, shape (n_samples,), PPG (any unit); sfreq : Hz
    Features as `ecg_features` (``rate_bpm``, ``rmssd_ms``, ``sdnn_ms``,
    ``pnn50_percent``, ``quality``), from the systolic peaks of NeuroKit2 ``ppg_peaks``.
    """
    return _cardiac_features(signal, sfreq, "ppg")


# ----------------------------------------------------------------- EDA, RSP, EMG, SKT


def eda_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Tonic level and skin conductance responses of an EDA segment.

    signal : array, shape (n_samples,), skin conductance in microsiemens; sfreq : Hz
    NeuroKit2 ``eda_process`` (3 Hz low-pass cleaning, high-pass tonic/phasic split,
    SCR peaks on the phasic part). Features: ``tonic_mean`` (mean tonic level, uS),
    ``scr_count`` (SCRs with amplitude >= `SCR_MIN_AMPLITUDE`), ``scr_amplitude_mean``
    (their mean amplitude, uS; NaN when there is none, which is not a flag).
    """
    x = _check_arguments(signal, sfreq)
    problem = _segment_problem(x, sfreq, "eda")
    if problem is not None:
        return _nan_result(EDA_FEATURES, [problem])
    try:
        signals, info = _quietly(nk.eda_process, x, sampling_rate=_nk_rate(sfreq))
    except _NK_FAILURES as error:
        return _nan_result(EDA_FEATURES, [f"NeuroKit2 eda_process failed: {error}"])
    amplitudes = np.asarray(info["SCR_Amplitude"], dtype=np.float64)
    amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes >= SCR_MIN_AMPLITUDE)]
    features = {
        "tonic_mean": float(signals["EDA_Tonic"].mean()),
        "scr_count": float(amplitudes.size),
        "scr_amplitude_mean": float(amplitudes.mean()) if amplitudes.size else math.nan,
    }
    return PhysioResult(features, [])


def rsp_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Breathing rate, amplitude and variability of a respiration segment.

    signal : array, shape (n_samples,), respiration belt (any unit); sfreq : Hz
    NeuroKit2 ``rsp_process`` (Khodadad et al. 2018 cleaning and peak detection).
    Features: ``rate_per_min`` (60 / mean breath-to-breath interval, breaths per minute),
    ``amplitude_mean`` (mean NeuroKit2 ``RSP_Amplitude`` at the inhalation peaks, signal
    units), ``breath_interval_sd_s`` (SD, ddof 1, of the breath-to-breath intervals in
    seconds: NeuroKit2's ``RRV_SDBB`` / 1000, computed directly because ``rsp_rrv``'s
    frequency-domain indices need minutes of signal; needs 3 breaths).
    """
    x = _check_arguments(signal, sfreq)
    problem = _segment_problem(x, sfreq, "rsp")
    if problem is not None:
        return _nan_result(RSP_FEATURES, [problem])
    try:
        signals, info = _quietly(nk.rsp_process, x, sampling_rate=_nk_rate(sfreq))
    except _NK_FAILURES as error:
        return _nan_result(RSP_FEATURES, [f"NeuroKit2 rsp_process failed: {error}"])
    peaks = np.asarray(info["RSP_Peaks"], dtype=np.int64)
    if peaks.size < 2:
        return _nan_result(
            RSP_FEATURES, [f"{peaks.size} breath(s) detected; a breathing rate needs 2"]
        )
    intervals = np.diff(peaks) / sfreq
    rate = 60.0 / float(intervals.mean())
    low, high = BREATHING_RATE_RANGE_PER_MIN
    if not low <= rate <= high:
        return _nan_result(
            RSP_FEATURES, [f"breathing rate {rate:.1f} /min outside {low:g}-{high:g} /min"]
        )
    features = {
        "rate_per_min": rate,
        "amplitude_mean": float(np.nanmean(signals["RSP_Amplitude"].to_numpy()[peaks])),
        "breath_interval_sd_s": math.nan,
    }
    flags: list[str] = []
    if intervals.size >= 2:
        features["breath_interval_sd_s"] = float(np.std(intervals, ddof=1))
    else:
        flags.append(f"{peaks.size} breaths detected; variability needs at least 3")
    return PhysioResult(features, flags)


def emg_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Root mean square of an EMG segment.

    signal : array, shape (n_samples,), EMG in volts (or the recorded unit); sfreq : Hz
    Feature ``rms`` (same unit as the signal) of the NeuroKit2 ``emg_clean`` output
    (4th-order 100 Hz Butterworth high-pass, zero-phase, mean removed). Below
    `EMG_MIN_SFREQ` the high-pass is impossible: the RMS of the mean-removed signal is
    returned with a flag saying so.
    """
    x = _check_arguments(signal, sfreq)
    problem = _segment_problem(x, sfreq, "emg")
    if problem is not None:
        return _nan_result(EMG_FEATURES, [problem])
    flags: list[str] = []
    if sfreq < EMG_MIN_SFREQ:
        cleaned = x - x.mean()
        flags.append(
            f"sampling rate {sfreq:g} Hz below {EMG_MIN_SFREQ:g} Hz: RMS of the uncleaned "
            "(mean-removed) signal"
        )
    else:
        try:
            cleaned = np.asarray(_quietly(nk.emg_clean, x, sampling_rate=_nk_rate(sfreq)))
        except _NK_FAILURES as error:
            return _nan_result(EMG_FEATURES, [f"NeuroKit2 emg_clean failed: {error}"])
    return PhysioResult({"rms": float(np.sqrt(np.mean(cleaned**2)))}, flags)


def skin_temperature_features(signal: ArrayLike, sfreq: float) -> PhysioResult:
    """Mean and linear trend of a skin temperature segment.

    signal : array, shape (n_samples,), degrees Celsius; sfreq : Hz
    Features ``mean`` (deg C) and ``slope_per_s`` (deg C per second): the least-squares
    line through the samples against time ``t = arange(n) / sfreq`` (NeuroKit2 has no
    skin-temperature module).
    """
    x = _check_arguments(signal, sfreq)
    problem = _segment_problem(x, sfreq, "skt")
    if problem is not None:
        return _nan_result(SKT_FEATURES, [problem])
    t = np.arange(x.size) / sfreq
    t_centred = t - t.mean()
    slope = float(np.dot(t_centred, x - x.mean()) / np.dot(t_centred, t_centred))
    return PhysioResult({"mean": float(x.mean()), "slope_per_s": slope}, [])


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


def physio_features(signals: pd.DataFrame | Mapping[str, ArrayLike], sfreq: float) -> PhysioResult:
    """Features of every physiology channel of one segment.

    signals : DataFrame (or mapping) with the canonical columns `PHYSIO_CHANNELS`
        (PPG RSP EDA ECG EMG_A EMG_B SKT_A SKT_B), one segment, recorded units
    sfreq : sampling rate in Hz
    Returns `PhysioResult` with the keys of `physio_feature_names` (e.g. ``ECG_rate_bpm``,
    ``EDA_scr_count``, ``SKT_A_slope_per_s``) and flags prefixed with the channel
    (``"RSP: breathing rate 52.0 /min outside 4-40 /min"``). A missing column gives NaN
    features and a flag; columns other than the canonical ones are ignored.
    """
    if not isinstance(signals, pd.DataFrame | Mapping):
        raise ConfigError(
            f"signals must be a DataFrame with columns {', '.join(PHYSIO_CHANNELS)}, "
            f"got {type(signals).__name__}"
        )
    features: dict[str, float] = {}
    flags: list[str] = []
    for channel in PHYSIO_CHANNELS:
        function, names = _CHANNEL_FUNCTIONS[channel]
        if channel in signals:
            result = function(np.asarray(signals[channel]), sfreq)
        else:
            result = _nan_result(names, ["channel missing from the recording"])
        features.update({f"{channel}_{name}": value for name, value in result.features.items()})
        flags.extend(f"{channel}: {flag}" for flag in result.flags)
    return PhysioResult(features, flags)
