"""Heart beats you can trust: ECG / PPG peaks, artefact correction, rate, HRV, quality.

Steps (only the NeuroKit2 steps whose outputs are used, Makowski et al. 2021):

1. clean: ``ecg_clean`` (0.5 Hz high-pass + 50 Hz powerline, NeuroKit method) or
   ``ppg_clean`` (Elgendi 2013 band-pass);
2. peaks: ``ecg_findpeaks`` (NeuroKit QRS-slope method) or ``ppg_findpeaks`` (Elgendi);
3. artefact correction: ``signal_fixpeaks(method="Kubios", iterative=True)``, the
   Lipponen & Tarvainen (2019, J. Med. Eng. Technol. 43:173) method that ``ecg_peaks(...,
   correct_artifacts=True)`` runs: ectopic, missed, extra and long/short beats are
   detected from the RR series and removed, inserted or moved. Two false R peaks on the
   slow wave after the QRS of a real AcqKnowledge ECG raised HR by 3 % and RMSSD 2.5x
   before this step;
4. RR intervals outside `RR_RANGE_S` (30-220 bpm) after correction are excluded from
   the rate and from HRV; when more than half are, there is no rate (NaN, flag). HRV
   uses normal-to-normal intervals only: intervals touching a beat the correction
   inserted or moved are left out (successive differences only between adjacent kept
   intervals, as NeuroKit2's ``hrv_time`` does for missing intervals);
5. time-domain HRV computed as NeuroKit2's ``hrv_time`` defines it (RMSSD, SDNN with
   ddof 1, pNN50 = NN50 / number of intervals), only on windows long enough for the
   measure (`HRV_MIN_DURATION_S`); shorter windows give NaN and a flag, never a number.

Every result carries ``n_beats`` (after correction) and ``n_corrected`` (beats the
correction changed) and a flag when the corrected share exceeds
`CORRECTED_SHARE_FLAG`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import neurokit2 as nk
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmhe.errors import ConfigError
from mmhe.features._physio_common import (
    NK_FAILURES,
    PhysioResult,
    check_arguments,
    nan_result,
    nk_rate,
    quietly,
    reused,
    valid_part,
)

HEART_RATE_RANGE_BPM = (30.0, 220.0)
"""Plausible heart rates (beats per minute); outside -> NaN and a flag."""
RR_RANGE_S = (60.0 / HEART_RATE_RANGE_BPM[1], 60.0 / HEART_RATE_RANGE_BPM[0])
"""Plausible beat-to-beat intervals (s); intervals outside are excluded and counted."""
CORRECTED_SHARE_FLAG = 0.05
"""A segment whose artefact correction changed more than this share of beats is flagged."""
HRV_MIN_DURATION_S: dict[str, float] = {"rmssd_ms": 10.0, "sdnn_ms": 60.0, "pnn50_percent": 60.0}
"""Shortest window (s) each HRV measure is reported on. Ultra-short RMSSD is valid from
about 10 s (Munoz et al. 2015, PLoS ONE 10:e0138921; Shaffer & Ginsberg 2017, Front.
Public Health 5:258); SDNN and pNN50 need at least 60 s (Shaffer & Ginsberg 2017; the
Task Force 1996 standard is 5 min), so an 8-s expression window gives neither."""
NORMAL_BEAT_SHIFT_S = 0.05
"""A corrected beat within 50 ms of a detected one is that beat, adjusted (the Kubios
method nudges normal beats by ~10 ms); farther, it is an inserted or relocated beat."""
MIN_BEATS_HRV = 4
"""RMSSD needs two successive RR differences, so at least four beats."""
CARDIAC_FEATURES = (
    "rate_bpm",
    "rmssd_ms",
    "sdnn_ms",
    "pnn50_percent",
    "quality",
    "n_beats",
    "n_corrected",
)
QualityMethod = Literal["correlation", "templatematch"]
QUALITY_METHODS: tuple[str, ...] = ("correlation", "templatematch")


@dataclass(frozen=True)
class Beats:
    """Beats of one segment.

    cleaned : the cleaned signal, shape (n_samples,)
    detected : beat sample indices as the detector found them
    peaks : beat sample indices after artefact correction
    n_corrected : beats the correction removed, inserted or moved
    changed : bool per entry of `peaks`, True for a beat the correction inserted or moved
        by more than `NORMAL_BEAT_SHIFT_S` (an ectopic beat put back on the sinus rhythm):
        not a normal beat, so the intervals touching it are left out of HRV
        (normal-to-normal intervals, Task Force 1996)
    """

    cleaned: NDArray[np.float64]
    detected: NDArray[np.int64]
    peaks: NDArray[np.int64]
    n_corrected: int
    changed: NDArray[np.bool_]


def _check_kind(kind: str) -> None:
    if kind not in ("ecg", "ppg"):
        raise ConfigError(f"kind={kind!r} is not 'ecg' or 'ppg'")


@reused
def detect_beats(x: NDArray[np.float64], sfreq: float, kind: str) -> Beats:
    """Cleaned signal, detected and artefact-corrected beats of a usable segment.

    x : shape (n_samples,), finite; sfreq : Hz; kind : "ecg" or "ppg".
    Raises one of NeuroKit2's failures on segments it cannot process.
    """
    rate = nk_rate(sfreq)
    if kind == "ecg":
        cleaned = np.asarray(quietly(nk.ecg_clean, x, sampling_rate=rate), dtype=np.float64)
        found = quietly(nk.ecg_findpeaks, cleaned, sampling_rate=rate)["ECG_R_Peaks"]
    else:
        cleaned = np.asarray(quietly(nk.ppg_clean, x, sampling_rate=rate), dtype=np.float64)
        found = quietly(nk.ppg_findpeaks, cleaned, sampling_rate=rate)["PPG_Peaks"]
    detected = np.asarray(found, dtype=np.int64)
    if detected.size < 3:  # Kubios needs an RR series to judge
        return Beats(cleaned, detected, detected, 0, np.zeros(detected.size, dtype=bool))
    _, fixed = quietly(
        nk.signal_fixpeaks, detected, sampling_rate=rate, iterative=True, method="Kubios"
    )
    peaks = np.unique(np.asarray(fixed, dtype=np.int64))
    peaks = peaks[(peaks >= 0) & (peaks < x.size)]
    tolerance = max(1, round(0.01 * sfreq))
    changed = _distance_to_nearest(peaks, detected) > round(NORMAL_BEAT_SHIFT_S * sfreq)
    kept = int(np.count_nonzero(_distance_to_nearest(detected, peaks) <= tolerance))
    n_corrected = int(max(detected.size, peaks.size) - kept)  # a moved beat counts once
    return Beats(cleaned, detected, peaks, n_corrected, changed)


def _distance_to_nearest(points: NDArray[np.int64], others: NDArray[np.int64]) -> NDArray[np.int64]:
    """Samples from each point to the nearest of `others` (sorted); large when none."""
    if others.size == 0:
        return np.full(points.size, np.iinfo(np.int64).max)
    index = np.searchsorted(others, points)
    left = others[np.clip(index - 1, 0, others.size - 1)]
    right = others[np.clip(index, 0, others.size - 1)]
    return np.minimum(np.abs(points - left), np.abs(points - right))


def rr_intervals(
    peaks: NDArray[np.int64], sfreq: float
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """(RR intervals in ms, mask of those inside `RR_RANGE_S`), shape (n_beats - 1,)."""
    rr_ms = np.diff(peaks) / sfreq * 1000.0
    low, high = RR_RANGE_S
    return rr_ms, (rr_ms >= low * 1000.0) & (rr_ms <= high * 1000.0)


def hrv_time_domain(rr_ms: NDArray[np.float64], kept: NDArray[np.bool_]) -> dict[str, float]:
    """RMSSD, SDNN and pNN50 of the kept RR intervals, as NeuroKit2's ``hrv_time`` does.

    rr_ms : RR intervals in ms, shape (n,); kept : bool, shape (n,).
    Successive differences only between two adjacent kept intervals. RMSSD = sqrt(mean
    diff^2), SDNN = SD (ddof 1) of the intervals, pNN50 = 100 * #(|diff| > 50 ms) /
    (#diffs + 1) (NeuroKit2's denominator: the number of intervals).
    """
    rr = rr_ms[kept]
    successive = kept[1:] & kept[:-1]
    diffs = np.diff(rr_ms)[successive]
    out = dict.fromkeys(("rmssd_ms", "sdnn_ms", "pnn50_percent"), math.nan)
    if diffs.size >= 1:
        out["rmssd_ms"] = float(np.sqrt(np.mean(diffs**2)))
        nn50 = np.count_nonzero(np.abs(diffs) > 50.0)
        out["pnn50_percent"] = float(nn50 / (diffs.size + 1) * 100.0)
    if rr.size >= 2:
        out["sdnn_ms"] = float(np.std(rr, ddof=1))
    return out


def beat_correlation(cleaned: NDArray[np.float64], peaks: NDArray[np.int64]) -> float:
    """Mean correlation of each beat with the average beat (template matching).

    cleaned : shape (n_samples,); peaks : beat indices.
    Each beat is the window of one median RR centred on its peak (Orphanidou et al. 2015,
    IEEE J. Biomed. Health Inform. 19:832); the template is their mean and the quality
    the mean Pearson correlation of the beats with it: near 1 for a clean signal, near 0
    on noise. One matrix product for all beats (NeuroKit2's ``templatematch`` computes
    the same idea beat by beat in pandas, ~35 % of per-trial physiology time).
    """
    if peaks.size < 3:
        return math.nan
    half = int(np.median(np.diff(peaks)) // 2)
    inside = peaks[(peaks - half >= 0) & (peaks + half < cleaned.size)]
    if inside.size < 2 or half < 2:
        return math.nan
    beats = cleaned[inside[:, None] + np.arange(-half, half)[None, :]]
    beats = beats - beats.mean(axis=1, keepdims=True)
    template = beats.mean(axis=0)
    norms = np.linalg.norm(beats, axis=1) * np.linalg.norm(template)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = beats @ template / norms
    return float(np.nanmean(r)) if np.isfinite(r).any() else math.nan


def _quality(beats: Beats, sfreq: float, kind: str, method: str) -> float:
    if method == "correlation":
        return beat_correlation(beats.cleaned, beats.peaks)
    function = nk.ecg_quality if kind == "ecg" else nk.ppg_quality
    quality = quietly(
        function, beats.cleaned, beats.peaks, sampling_rate=nk_rate(sfreq), method="templatematch"
    )
    return float(np.nanmean(quality))


def cardiac_features(
    signal: ArrayLike,
    sfreq: float,
    kind: Literal["ecg", "ppg"] = "ecg",
    *,
    quality: QualityMethod = "correlation",
) -> PhysioResult:
    """Rate, time-domain HRV, quality and beat counts of an ECG or PPG segment.

    signal : array, shape (n_samples,), any unit; NaN samples (masked at read time) leave
        the longest finite stretch to analyse (flagged); sfreq : Hz; kind : "ecg"/"ppg".
    quality : "correlation" (default, `beat_correlation`, microseconds) or
        "templatematch" (NeuroKit2's ``ecg_quality`` / ``ppg_quality``, about 1/3 of the
        per-trial physiology time).
    Features `CARDIAC_FEATURES`: ``rate_bpm`` (60000 / mean kept RR in ms), ``rmssd_ms``,
    ``sdnn_ms``, ``pnn50_percent`` (NaN below `HRV_MIN_DURATION_S`), ``quality``,
    ``n_beats`` and ``n_corrected``.
    """
    _check_kind(kind)
    if quality not in QUALITY_METHODS:
        raise ConfigError(f"quality={quality!r} is not one of {QUALITY_METHODS}")
    x, problem, flags = valid_part(check_arguments(signal, sfreq), sfreq, kind)
    if x is None:
        return nan_result(CARDIAC_FEATURES, [*flags, problem])
    try:
        beats = detect_beats(x, sfreq, kind)
    except NK_FAILURES as error:
        return nan_result(CARDIAC_FEATURES, [*flags, f"NeuroKit2 beat detection failed: {error}"])
    features = dict.fromkeys(CARDIAC_FEATURES, math.nan)
    features["n_beats"] = float(beats.peaks.size)
    features["n_corrected"] = float(beats.n_corrected)
    if beats.peaks.size < 2:
        flags.append(f"{beats.peaks.size} beat(s) detected; a heart rate needs at least 2")
        return PhysioResult(features, flags)
    share = beats.n_corrected / max(beats.detected.size, 1)
    if share > CORRECTED_SHARE_FLAG:
        flags.append(
            f"artefact correction changed {beats.n_corrected} of {beats.detected.size} beats "
            f"({100 * share:.0f} % > {100 * CORRECTED_SHARE_FLAG:g} %)"
        )
    rr_ms, kept = rr_intervals(beats.peaks, sfreq)
    if not kept.all():
        flags.append(
            f"{np.count_nonzero(~kept)} of {rr_ms.size} RR intervals outside "
            f"{RR_RANGE_S[0]:.2f}-{RR_RANGE_S[1]:.2f} s excluded"
        )
    low, high = HEART_RATE_RANGE_BPM
    if np.count_nonzero(kept) < 0.5 * rr_ms.size:  # mostly implausible: no rate at all
        rate = 60000.0 / float(np.mean(rr_ms))
        flags.append(f"heart rate {rate:.1f} bpm outside {low:g}-{high:g} bpm")
        return PhysioResult(features, flags)
    features["rate_bpm"] = 60000.0 / float(np.mean(rr_ms[kept]))
    try:
        features["quality"] = _quality(beats, sfreq, kind, quality)
    except NK_FAILURES as error:
        flags.append(f"NeuroKit2 signal quality failed: {error}")
    duration = x.size / sfreq
    normal = kept & ~beats.changed[1:] & ~beats.changed[:-1]  # normal-to-normal intervals
    hrv = hrv_time_domain(rr_ms, normal)
    short = [name for name, minimum in HRV_MIN_DURATION_S.items() if duration < minimum]
    if beats.peaks.size < MIN_BEATS_HRV:
        flags.append(f"{beats.peaks.size} beats detected; HRV needs at least {MIN_BEATS_HRV}")
        short = list(HRV_MIN_DURATION_S)
    elif short:
        flags.append(
            f"window of {duration:.1f} s too short for "
            + ", ".join(f"{name} (needs {HRV_MIN_DURATION_S[name]:g} s)" for name in short)
        )
    features.update({name: value for name, value in hrv.items() if name not in short})
    return PhysioResult(features, flags)


def heart_rate(signal: ArrayLike, sfreq: float, kind: Literal["ecg", "ppg"] = "ecg") -> float:
    """Mean heart rate of a segment in beats per minute (`cardiac_features`' ``rate_bpm``).

    signal : array, shape (n_samples,), ECG or PPG in any unit; sfreq : Hz.
    NaN when the segment is unusable or no RR interval is plausible.
    """
    return cardiac_features(signal, sfreq, kind)[0]["rate_bpm"]
